"""Cost and accuracy of three softplus forms inside aelab's BCE loss on CPU.

    python experiments/speed/softplus_forms.py

Times the loss of a 1000 x 784 batch of logits (bias add, softplus(z) - x z, per-example
sums, mean), compiled as aelab compiles an evaluation, for max(z, 0) + log1p(e),
max(z, 0) + log(1 + e) and `aelab.losses.softplus_series` (the atanh series), e = e^-|z|; then
each form's worst relative error against float64 over z in [-80, 80].
"""
import time

import jax
import jax.numpy as jnp
import numpy as np

from aelab import losses
from aelab.compiler import CompilePolicy


def with_log1p(z):
    return jnp.maximum(z, 0) + jnp.log1p(jnp.exp(-jnp.abs(z)))


def with_log(z):
    return jnp.maximum(z, 0) + jnp.log(1 + jnp.exp(-jnp.abs(z)))


FORMS = {"log1p(e)": with_log1p, "log(1 + e)": with_log, "aelab (atanh series)": losses.softplus_series}


def loss_program(softplus):
    def loss(logits, bias, target):
        z = logits + bias
        return jnp.mean(losses._sum_per_example(softplus(z) - target * z))
    return CompilePolicy.for_config().jit(loss, program="evaluate")


def median_ms(f, args, repeats=300):
    jax.block_until_ready(f(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(f(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def main():
    rng = np.random.default_rng(0)
    args = (jnp.asarray(4 * rng.standard_normal((1000, 784)), jnp.float32), jnp.zeros(784, jnp.float32),
            jnp.asarray(rng.random((1000, 784)), jnp.float32))
    programs = {name: loss_program(form) for name, form in FORMS.items()}
    for _ in range(3):  # alternated rounds: compare within a line
        print("  ".join(f"{name}: {median_ms(f, args):.3f} ms" for name, f in programs.items()))
    z = np.linspace(-80, 80, 1_600_001, dtype=np.float32)
    exact = np.logaddexp(0.0, z.astype(np.float64))
    for name, form in FORMS.items():
        value = np.asarray(jax.jit(form)(jnp.asarray(z)), np.float64)
        print(f"{name}: max relative error {np.max(np.abs(value - exact) / exact):.2e}")


if __name__ == "__main__":
    main()

"""What each reconstruction likelihood costs a colour VAE's training step on CPU.

    python experiments/speed/likelihood_heads.py [--batch=64] [--size=32] [--record]

Times the loss of `aelab.losses.recon_loss(NAME)` and its gradient with respect to the
decoder's raw output (the part of a training step that depends on the likelihood alone), at
configs/cifar10_vae.py's shape (batch 64 of 32x32x3; the discretized logistic mixture with its
5 components reads 5 * (1 + 2 * 3) = 35 channels), compiled as a training step is. Alternated
rounds; prints the median milliseconds per call of each and their ratio to bce. `--record`
appends them, with the commit, to experiments/speed/results.jsonl.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys

import jax
import jax.numpy as jnp
import numpy as np

from aelab import bench, losses
from aelab.compiler import CompilePolicy

REPO = pathlib.Path(__file__).resolve().parents[2]
NAMES = ("bce", "mse", "dlogistic")


def program(loss: losses.ReconLoss, policy: CompilePolicy):
    return policy.jit(jax.value_and_grad(lambda raw, x: jnp.mean(loss.per_example(raw, x))), program="train")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    policy = CompilePolicy.for_config()
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.integers(0, 256, (args.batch, args.size, args.size, 3)) / 255.0, jnp.float32)
    calls = {}
    for name in NAMES:
        loss = losses.recon_loss(name)
        raw = jnp.asarray(rng.standard_normal((args.batch, args.size, args.size, loss.out_channels(3))), jnp.float32)
        f = program(loss, policy)
        calls[name] = lambda f=f, raw=raw: f(raw, x)
    ms = {name: [] for name in NAMES}
    for _ in range(3):  # alternated rounds
        for name in NAMES:
            ms[name].append(1e3 * bench.seconds_per_call(calls[name], 1.0))
    medians = {name: statistics.median(values) for name, values in ms.items()}
    for name in NAMES:
        print(f"{name}: {medians[name]:.2f} ms per loss + gradient ({medians[name] / medians['bce']:.1f}x bce)")
    if args.record:
        sys.path.insert(0, str(REPO / "experiments" / "speed"))
        from compare import record  # noqa: E402

        record([{"workload": "likelihood_heads", "batch": args.batch, "size": args.size, "ms": medians}],
               " ".join(["python", *sys.argv]))


if __name__ == "__main__":
    main()

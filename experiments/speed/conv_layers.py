"""Per-layer timing of the conv_ae train step on CPU: forward, weight and input gradients of each
layer alone (batch 128), native and sub-pixel transposed convolutions.

    python experiments/speed/conv_layers.py [--ynn]

Compiled as aelab compiles a convolution model (aelab.compiler: no YNNPACK matmuls on CPU); --ynn keeps XLA's default.
"""
import sys, time, jax, jax.numpy as jnp
from flax import nnx
from aelab.compiler import CompilePolicy
from aelab.models.conv import conv_transpose_subpixel

jit = lambda f: CompilePolicy("cpu", cpu_ynn_dots="--ynn" in sys.argv).jit(f, program="train")

def timeit(f, *args, n=30):
    out = f(*args); jax.block_until_ready(out)
    t = time.perf_counter()
    for _ in range(n): out = f(*args)
    jax.block_until_ready(out); return (time.perf_counter() - t) / n * 1e3

B = 128; r = nnx.Rngs(0)
layers = {
    "conv 1->32 s2 (28->14)": (nnx.Conv(1, 32, (3, 3), strides=2, padding="SAME", rngs=r), (B, 28, 28, 1), None),
    "conv 32->64 s2 (14->7)": (nnx.Conv(32, 64, (3, 3), strides=2, padding="SAME", rngs=r), (B, 14, 14, 32), None),
    "dense 3136->16": (nnx.Linear(3136, 16, rngs=r), (B, 3136), None),
    "dense 16->3136": (nnx.Linear(16, 3136, rngs=r), (B, 16), None),
    "convT 64->32 s2 (7->14) native": (nnx.ConvTranspose(64, 32, (3, 3), strides=2, padding="SAME", rngs=r), (B, 7, 7, 64), False),
    "convT 64->32 s2 (7->14) sub-pixel": (nnx.ConvTranspose(64, 32, (3, 3), strides=2, padding="SAME", rngs=r), (B, 7, 7, 64), True),
    "convT 32->1 s2 (14->28) native": (nnx.ConvTranspose(32, 1, (3, 3), strides=2, padding="SAME", rngs=r), (B, 14, 14, 32), False),
    "convT 32->1 s2 (14->28) sub-pixel": (nnx.ConvTranspose(32, 1, (3, 3), strides=2, padding="SAME", rngs=r), (B, 14, 14, 32), True),
}
for name, (layer, shape, sub) in layers.items():
    x = jax.random.normal(jax.random.key(0), shape)
    g, state = nnx.split(layer)
    def apply(state, x):
        m = nnx.merge(g, state)
        return conv_transpose_subpixel(m, x) if sub else m(x)
    fwd = jit(apply)
    loss = lambda s, x: jnp.sum(apply(s, x) ** 2)
    wgrad = jit(jax.grad(loss, 0)); xgrad = jit(jax.grad(loss, 1))
    print(f"{name:38s} forward {timeit(fwd, state, x):6.2f} ms  weight grad {timeit(wgrad, state, x):6.2f} ms  input grad {timeit(xgrad, state, x):6.2f} ms")

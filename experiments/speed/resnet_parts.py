"""What the resnet_vae train step spends its time on, in aelab and in PyTorch, layer by layer.

    python experiments/speed/resnet_parts.py --torch_python=/tmp/torchvenv/bin/python [--record]

Times, on the workload of `aelab bench --workload=resnet_vae` (W4 of ../shared/bench/torch_ref.py:
batch 64, 32x32x3, residual blocks of 32, 64 and 128 channels), each side's whole train step
and forward + backward (gradients of the parameters and of the input, as inside the step) of
every layer of the model alone, at the shape it sees there; a GroupNorm + SiLU pair is also
timed alone, inside the residual blocks. aelab's layers are aelab.models.resnet's, compiled as
aelab compiles the step (its compile policy, "train" program), channels last; PyTorch's are
torch_ref's modules, eager, channels first, in a `--torch_python` process with as many threads
as cores. Prints milliseconds per call, each layer's count in the model, and the time ratio;
`--record` appends the figures to results.jsonl.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
from flax import nnx

from aelab import bench, provenance
from aelab.models.layers import GroupNorm
from aelab.models.resnet import ResBlock, ResNetDecoder
from aelab.steps import train_step_fn

HERE = pathlib.Path(__file__).resolve().parent
REFERENCE = HERE.parents[1].parent / "shared" / "bench" / "torch_ref.py"
B = 64
# part -> (times it occurs in the model, kind, in channels, out channels, input side)
PARTS = {
    "stem conv 3->32 @32": (1, "conv", 3, 32, 32),
    "ResBlock(32) @32": (2, "block", 32, 32, 32),
    "GroupNorm+SiLU (32) @32": (4, "norm", 32, 32, 32),
    "conv s2 32->64 @32": (1, "down", 32, 64, 32),
    "ResBlock(64) @16": (2, "block", 64, 64, 16),
    "conv s2 64->128 @16": (1, "down", 64, 128, 16),
    "ResBlock(128) @8": (2, "block", 128, 128, 8),
    "dense 8192->128": (1, "dense", 8192, 128, 0),
    "dense 64->8192": (1, "dense", 64, 8192, 0),
    "up x2 + conv 128->64 @8": (1, "up", 128, 64, 8),
    "up x2 + conv 64->32 @16": (1, "up", 64, 32, 16),
    "out conv 32->3 @32": (1, "conv", 32, 3, 32),
}

TORCH_PARTS = r"""
import importlib.util, json, statistics, sys, time, torch, torch.nn as nn, torch.nn.functional as F
torch.set_num_threads(int(sys.argv[2]))
torch.manual_seed(0)
spec = importlib.util.spec_from_file_location("torch_ref", sys.argv[1])
ref = importlib.util.module_from_spec(spec); spec.loader.exec_module(ref)
parts = json.loads(sys.argv[3]); B = 64
def per_call(f):
    f(); f(); rates = []
    for _ in range(5):
        n, t = 0, time.perf_counter()
        while time.perf_counter() - t < 0.4: f(); n += 1
        rates.append((time.perf_counter() - t) / n)
    return statistics.median(rates) * 1e3
class Up(nn.Module):
    def __init__(self, a, b):
        super().__init__(); self.conv = nn.Conv2d(a, b, 3, padding=1)
    def forward(self, x): return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))
class NormSiLU(nn.Module):
    def __init__(self, c):
        super().__init__(); self.norm = nn.GroupNorm(8, c)
    def forward(self, x): return F.silu(self.norm(x))
def layer(kind, a, b):
    return {"conv": lambda: nn.Conv2d(a, b, 3, padding=1), "block": lambda: ref.ResBlock(a),
            "norm": lambda: NormSiLU(a), "down": lambda: nn.Conv2d(a, b, 3, stride=2, padding=1),
            "dense": lambda: nn.Linear(a, b), "up": lambda: Up(a, b)}[kind]()
model, loss_fn, shape = ref.make("resnet_vae")
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
x = torch.from_numpy(ref.synthetic_data("resnet_vae", B, 0))
def step():
    opt.zero_grad(set_to_none=True); loss_fn(x).backward(); opt.step()
out = {"step": per_call(step)}
for name, (count, kind, a, b, side) in parts.items():
    m = layer(kind, a, b)
    inp = torch.randn(B, a, side, side) if side else torch.randn(B, a)
    inp.requires_grad_(True)
    g = torch.randn_like(m(inp))
    def fwd_bwd():
        m.zero_grad(set_to_none=True); inp.grad = None; m(inp).backward(g)
    out[name] = per_call(fwd_bwd)
print(json.dumps(out))
"""


class NormSiLU(nnx.Module):
    def __init__(self, channels: int, *, rngs: nnx.Rngs):
        self.norm = GroupNorm(channels, num_groups=8, epsilon=1e-5, rngs=rngs)

    def __call__(self, x):
        return jax.nn.silu(self.norm(x))


class Up(nnx.Module):
    """ResNetDecoder's `resize` upsampling, in the form the compile policy picks."""

    upsample = "resize"

    def __init__(self, a: int, b: int, subpixel: bool, *, rngs: nnx.Rngs):
        self.conv = nnx.Conv(a, b, (3, 3), padding="SAME", rngs=rngs)
        self.subpixel = subpixel

    def __call__(self, x):
        return ResNetDecoder._upsample(self, self.conv, x)


def layer(kind: str, a: int, b: int, rngs: nnx.Rngs, subpixel: bool) -> nnx.Module:
    return {"conv": lambda: nnx.Conv(a, b, (3, 3), padding="SAME", rngs=rngs),
            "block": lambda: ResBlock(a, 8, rngs=rngs), "norm": lambda: NormSiLU(a, rngs=rngs),
            "down": lambda: nnx.Conv(a, b, (3, 3), strides=2, padding="SAME", rngs=rngs),
            "dense": lambda: nnx.Linear(a, b, rngs=rngs), "up": lambda: Up(a, b, subpixel, rngs=rngs)}[kind]()


def per_call(f) -> float:
    """Milliseconds per call."""
    return 1e3 * bench.seconds_per_call(f, 2.0)


def aelab_parts() -> dict[str, float]:
    config, task, policy, graphdef, state = bench.workload_state("resnet_vae")
    batch = jax.tree.map(jnp.asarray, bench.synthetic_data("resnet_vae", config.train.batch_size, 0))
    step = policy.jit(train_step_fn(graphdef, task, policy, log_every=100, num_steps=bench.NUM_STEPS),
                      program="train")
    rng = jax.random.key(0)
    out = {"step": per_call(lambda: step(state, batch, rng))}
    rngs = nnx.Rngs(0)
    for name, (_, kind, a, b, side) in PARTS.items():
        module_graph, params = nnx.split(layer(kind, a, b, rngs, policy.subpixel_upsampling))
        x = jax.random.normal(rng, (B, side, side, a) if side else (B, a))
        g = jax.random.normal(rng, nnx.merge(module_graph, params)(x).shape)

        def fwd_bwd(params, x, g, module_graph=module_graph):
            return jax.grad(lambda p, x: jnp.vdot(nnx.merge(module_graph, p)(x), g), argnums=(0, 1))(params, x)
        compiled = policy.jit(fwd_bwd, program="train")
        out[name] = per_call(lambda: compiled(params, x, g))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch_python", required=True)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    begun = provenance.start()
    threads = str(len(os.sched_getaffinity(0)))
    ours = aelab_parts()
    theirs = json.loads(subprocess.run(
        [args.torch_python, "-c", TORCH_PARTS, str(REFERENCE), threads, json.dumps(PARTS)],
        capture_output=True, text=True, check=True).stdout.splitlines()[-1])
    print("| part (forward + backward, batch 64) | in the model | aelab ms | torch ms | aelab / torch time |")
    print("|---|---|---|---|---|")
    for part in ours:
        count = PARTS[part][0] if part in PARTS else 1
        print(f"| {part} | {count}x | {ours[part]:.2f} | {theirs[part]:.2f} | {ours[part] / theirs[part]:.2f} |")
    layers = [p for p in PARTS if PARTS[p][1] != "norm"]  # the norms are inside the blocks
    for side, figures in (("aelab", ours), ("torch", theirs)):
        total = sum(PARTS[p][0] * figures[p] for p in layers)
        print(f"{side}: layers' sum {total:.1f} ms of a {figures['step']:.1f} ms step")
    if args.record:
        line = {"workload": "resnet_parts", "aelab_ms": ours, "torch_ms": theirs, **provenance.record(begun)}
        with open(HERE / "results.jsonl", "a") as f:
            f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    sys.exit(main())

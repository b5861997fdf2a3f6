"""How fast a workload could be if only its matrix multiplications cost time.

    python experiments/speed/matmul_floor.py --torch_python=/tmp/torchvenv/bin/python [--workloads=mlp_ae,mlp_vae,transformer_mt]

For aelab's own train step (one step, as `aelab bench` compiles it) and evaluation
(forward + loss, batch 1000), lists every `dot_general` in the traced program (the
gradient norm's dots are left out: they run on log steps only), times each one
alone as XLA compiles it for aelab (its compile policy, with the matmul library aelab
picks for that program: YNNPACK in these train steps, Eigen in evaluation) and as PyTorch's CPU matmul
does it (the same shapes and transposes as one `torch.einsum`, in a `--torch_python` process), minus
each side's cost of a trivial call. Then it runs ../shared/bench/torch_ref.py and
prints the ratio aelab would reach if everything but its matmuls were free:
torch's measured step time / the sum of XLA's matmul times. That bound says what
a target is still within reach of the step's other work, and what only a faster
matmul could give.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.extend
import jax.numpy as jnp

from aelab import bench
from aelab.compiler import CompilePolicy
from aelab.steps import train_step_fn

REPO = pathlib.Path(__file__).resolve().parents[2]
TORCH_REF = REPO.parent / "shared" / "bench" / "torch_ref.py"

TORCH_TIMER = r"""
import json, statistics, sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
def per_call(f):
    f(); rates = []
    for _ in range(5):
        n, t = 0, time.perf_counter()
        while time.perf_counter() - t < 0.1: f(); n += 1
        rates.append((time.perf_counter() - t) / n)
    return statistics.median(rates)
out = []
for lhs, rhs, spec in json.loads(sys.stdin.read()):
    a, b = torch.rand(*lhs), torch.rand(*rhs)
    out.append(per_call(lambda: torch.einsum(spec, a, b)) - per_call(lambda: a[:1]))
print(json.dumps(out))
"""


def einsum_spec(lhs_rank: int, rhs_rank: int, dimension_numbers) -> str:
    """The einsum that computes a dot_general: batch dims, then lhs's free dims, then rhs's."""
    (lc, rc), (lb, rb) = dimension_numbers
    letters = iter("abcdefghijklmnopqrstuvwxyz")
    left = [next(letters) for _ in range(lhs_rank)]
    right = [next(letters) for _ in range(rhs_rank)]
    for i, j in zip(lc + lb, rc + rb):
        right[j] = left[i]
    out = [left[i] for i in lb] + [c for i, c in enumerate(left) if i not in lc + lb]
    out += [c for j, c in enumerate(right) if j not in rc + rb]
    return f"{''.join(left)},{''.join(right)}->{''.join(out)}"


def dots_of(jaxpr, skip=("cond",)) -> list[tuple]:
    """(lhs shape, rhs shape, dimension numbers) of every dot_general that contracts: dense
    layers on (B, T, D) and attention's batched products too."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            numbers = eqn.params["dimension_numbers"]
            lhs, rhs = eqn.invars[0].aval.shape, eqn.invars[1].aval.shape
            if numbers[0][0]:  # no contraction: an outer product, which XLA turns into a multiply
                (lc, rc), (lb, rb) = numbers
                found.append((tuple(lhs), tuple(rhs), ((tuple(lc), tuple(rc)), (tuple(lb), tuple(rb)))))
        if eqn.primitive.name in skip:
            continue
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                if isinstance(sub, (jax.extend.core.ClosedJaxpr, jax.extend.core.Jaxpr)):
                    found += dots_of(getattr(sub, "jaxpr", sub), skip)
    return found


def xla_seconds(lhs, rhs, numbers, policy: CompilePolicy, program: str) -> float:
    a, b = jnp.ones(lhs), jnp.ones(rhs)
    dot = policy.jit(lambda a, b: jax.lax.dot_general(a, b, numbers), program=program)
    trivial = policy.jit(lambda a, b: a[:1], program=program)
    return bench.seconds_per_call(lambda: dot(a, b), 0.5) - bench.seconds_per_call(lambda: trivial(a, b), 0.5)


def programs(workload: str):
    """The jaxprs of aelab's train step and evaluation (forward + loss at bench.EVAL_BATCH)."""
    config, task, policy, graphdef, state = bench.workload_state(workload)
    rng = jax.random.key(0)
    step = train_step_fn(graphdef, task, policy, log_every=100, num_steps=bench.NUM_STEPS)
    eval_size = bench.EVAL_BATCHES.get(workload, bench.EVAL_BATCH)
    train_batch, eval_batch = (jax.tree.map(jnp.asarray, bench.synthetic_data(workload, n, 0))
                               for n in (config.train.batch_size, eval_size))
    evaluation = bench.forward_and_loss_fn(graphdef, task)
    return {"train": (jax.make_jaxpr(step)(state, train_batch, rng).jaxpr, config.train.batch_size),
            "eval": (jax.make_jaxpr(evaluation)(state, eval_batch, rng).jaxpr, eval_size)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--torch_python", required=True)
    parser.add_argument("--workloads", default="mlp_ae,mlp_vae")
    args = parser.parse_args()
    threads = str(len(os.sched_getaffinity(0)))
    print("| workload | program | matmuls | XLA matmuls ms | torch matmuls ms | torch measured ms "
          "| bound on aelab/torch if only matmuls cost |")
    print("|---|---|---|---|---|---|---|")
    for workload in args.workloads.split(","):
        reference = json.loads(subprocess.run([args.torch_python, str(TORCH_REF), "--workload", workload, "--json"],
                                              capture_output=True, text=True, check=True).stdout.splitlines()[-1])
        for name, (jaxpr, batch_size) in programs(workload).items():
            dots = dots_of(jaxpr)
            policy = bench.workload_state(workload)[2]  # as aelab compiles this workload's programs
            xla = sum(xla_seconds(*d, policy, "train" if name == "train" else "evaluate") for d in dots)
            shapes = [(lhs, rhs, einsum_spec(len(lhs), len(rhs), numbers)) for lhs, rhs, numbers in dots]
            torch_each = json.loads(subprocess.run([args.torch_python, "-c", TORCH_TIMER, threads], input=json.dumps(shapes),
                                                   capture_output=True, text=True, check=True).stdout)
            measured = batch_size / reference[f"{name}_examples_per_s"]
            print(f"| {workload} | {name} (batch {batch_size}) | {len(dots)} | {xla * 1e3:.2f} | "
                  f"{sum(torch_each) * 1e3:.2f} | {measured * 1e3:.2f} | **{measured / xla:.2f}x** |", flush=True)


if __name__ == "__main__":
    sys.exit(main())

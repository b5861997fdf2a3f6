"""Does a change alter what XLA runs? The optimized programs of the bench workloads, this tree
against another commit, compared line for line (debug metadata aside).

    python experiments/speed/same_programs.py --base=REV

For each workload of `aelab bench` it compiles the train step, the evaluation step and
the reference's forward + loss as the trainer does, in this tree and in REV (a temporary
git worktree), and prints "identical" or the first differing line. Identical programs
run at the same speed, whatever a noisy timing says: the check a refactor needs.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[2]

# Run in each tree: prints {"workload/program": normalized optimized HLO}.
DUMP = r"""
import json, re, jax, jax.numpy as jnp
from aelab import bench

def programs(workload):
    config, task, third, graphdef, state = bench.workload_state(workload)
    logging = {"log_every": config.train.log_every, "num_steps": bench.NUM_STEPS}
    try:
        from aelab import steps  # the compile-policy API
        policy = third
        return (steps.make_train_step(graphdef, task, policy, **logging), steps.make_eval_step(graphdef, task, policy),
                policy.jit(bench.forward_and_loss_fn(graphdef, task), program="evaluate"), config)
    except ImportError:  # before the compile policy: aelab.train's builders and ynn_dots flags
        from aelab import compiler, train
        ynn, ynn_eval = train.train_ynn_dots(None, third), compiler.ynn_dots_for(None, "evaluate")
        return (train.make_train_step(graphdef, task, ynn_dots=ynn, **logging),
                train.make_eval_step(graphdef, task, ynn_dots=ynn_eval),
                compiler.jit(bench.forward_and_loss_fn(graphdef, task), ynn_dots=ynn_eval), config)

def normalized(text):
    text = re.sub(r", (metadata=\{[^}]*\}|stack_frame_id=\d+)", "", text)
    return "\n".join(line for line in text.splitlines()
                     if not re.match(r"^(\d+ |HloModule |FileNames|FunctionNames|FileLocations|StackFrames)", line))

out, rng = {}, jax.random.key(0)
for workload in bench.WORKLOADS:
    train_step, eval_step, forward_and_loss, config = programs(workload)
    state = bench.workload_state(workload)[4]
    batch = {"image": jnp.zeros((config.train.batch_size, 28, 28, 1))}
    evaluation = {"image": jnp.zeros((bench.EVAL_BATCH, 28, 28, 1)), "mask": jnp.ones(bench.EVAL_BATCH)}
    for name, f, args in (("train", train_step, (state, batch, rng)), ("eval", eval_step, (state, evaluation, rng)),
                          ("forward_and_loss", forward_and_loss, (state, evaluation, rng))):
        out[f"{workload}/{name}"] = normalized(f.lower(*args).compile().as_text())
print(json.dumps(out))
"""


def dump(tree: pathlib.Path) -> dict[str, str]:
    done = subprocess.run([sys.executable, "-c", DUMP], capture_output=True, text=True, check=True, cwd=tree,
                          env={**os.environ, "PYTHONPATH": str(tree), "JAX_PLATFORMS": os.environ.get(
                              "JAX_PLATFORMS", "cpu")})
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        base = pathlib.Path(scratch) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", str(base), args.base], cwd=REPO, check=True,
                       capture_output=True)
        try:
            before, after = dump(base), dump(REPO)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=REPO, capture_output=True)
    for key in sorted(before.keys() | after.keys()):
        a, b = before.get(key, "").splitlines(), after.get(key, "").splitlines()
        if a == b:
            print(f"{key}: identical ({len(a)} lines)")
            continue
        first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        print(f"{key}: DIFFERENT at line {first + 1}: {a[first] if first < len(a) else '(end)'!r} -> "
              f"{b[first] if first < len(b) else '(end)'!r}")


if __name__ == "__main__":
    main()

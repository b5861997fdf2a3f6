"""`aelab bench` of two commits, alternated in one run: did a change move the speed?

    python experiments/speed/ab.py --base=REV [--repeats=3] [--workloads=mlp_ae,conv_ae,mlp_vae] [--record]

Checks REV out in a temporary git worktree and runs `aelab bench --workload=W --json`
from it and from this working tree, one after the other, `--repeats` times each,
as separate processes. Prints the medians and their ratios (this tree / REV) for
train and eval examples/s. `--record` appends each raw line, with the commit it
measured, to experiments/speed/results.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "experiments" / "speed"))
from compare import WORKLOADS, record  # noqa: E402


def bench(tree: pathlib.Path, workload: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "aelab.main", "bench", f"--workload={workload}", "--json"],
                          capture_output=True, text=True, check=True, cwd=tree,
                          env={**os.environ, "PYTHONPATH": str(tree)})
    return json.loads(done.stdout.strip().splitlines()[-1])


def commit_of(tree: pathlib.Path) -> str:
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tree, capture_output=True, text=True).stdout
    dirty = subprocess.run(["git", "status", "--porcelain", "aelab"], cwd=tree, capture_output=True, text=True).stdout
    return head.strip() + ("+changes" if dirty.strip() else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        base = pathlib.Path(scratch) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", str(base), args.base], cwd=REPO, check=True,
                       capture_output=True)
        try:
            trees = {"base": base, "this": REPO}
            commits = {name: commit_of(tree) for name, tree in trees.items()}
            lines = []
            print("| workload | base train | this train | ratio | base eval | this eval | ratio |")
            print("|---|---|---|---|---|---|---|")
            for workload in args.workloads.split(","):
                results = {name: [] for name in trees}
                for _ in range(args.repeats):
                    for name, tree in trees.items():
                        result = bench(tree, workload)
                        results[name].append(result)
                        lines.append({**result, "commit": commits[name], "variant": f"ab {name}"})
                median = {name: {key: statistics.median(r[key] for r in runs)
                                 for key in ("train_examples_per_s", "eval_examples_per_s")}
                          for name, runs in results.items()}
                b, t = median["base"], median["this"]
                print(f"| {workload} | {b['train_examples_per_s']:,.0f} | {t['train_examples_per_s']:,.0f} | "
                      f"{t['train_examples_per_s'] / b['train_examples_per_s']:.3f} | "
                      f"{b['eval_examples_per_s']:,.0f} | {t['eval_examples_per_s']:,.0f} | "
                      f"{t['eval_examples_per_s'] / b['eval_examples_per_s']:.3f} |", flush=True)
            print(f"base {args.base} ({commits['base']}), this tree {commits['this']}")
            if args.record:
                record(lines, " ".join(["python", *sys.argv]))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=REPO, capture_output=True)


if __name__ == "__main__":
    main()

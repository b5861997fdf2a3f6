"""How long a one-sentence `aelab translate` takes, this tree against another commit.

    python experiments/speed/use_startup.py --workdir=RUN [--base=REV] [--repeats=3] [--record]

Pipes one Spanish sentence into `aelab translate --workdir=RUN` (a trained
translation run) as a separate process, `--repeats` times after one warm-up
(the compilation cache is warm from then on), alternating between this tree
and REV (a temporary git worktree) when given. Prints the median wall seconds;
`--record` appends one line per tree to experiments/speed/results.jsonl.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "experiments" / "speed"))
from ab import commit_of  # noqa: E402
from compare import record  # noqa: E402

SENTENCE = "¿Dónde está la estación?\n"


def seconds(tree: pathlib.Path, workdir: str) -> tuple[float, str]:
    start = time.perf_counter()
    # Both trees run from this one's root (-P: aelab comes from PYTHONPATH, not the working
    # directory), so the run's relative data paths resolve alike.
    done = subprocess.run([sys.executable, "-P", "-m", "aelab.main", "translate", f"--workdir={workdir}"],
                          input=SENTENCE, capture_output=True, text=True, check=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(tree)})
    return time.perf_counter() - start, done.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--base", default="")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    workdir = str(pathlib.Path(args.workdir).resolve())
    with tempfile.TemporaryDirectory() as scratch:
        trees = {"this": REPO}
        if args.base:
            trees["base"] = pathlib.Path(scratch) / "base"
            subprocess.run(["git", "worktree", "add", "--detach", str(trees["base"]), args.base], cwd=REPO,
                           check=True, capture_output=True)
        try:
            times = {name: [] for name in trees}
            for tree in trees.values():
                seconds(tree, workdir)  # warm-up: fills the compilation cache
            for _ in range(args.repeats):
                for name, tree in trees.items():
                    took, translation = seconds(tree, workdir)
                    times[name].append(took)
            lines = []
            for name, tree in trees.items():
                median = statistics.median(times[name])
                print(f"{name} ({commit_of(tree)}): {median:.2f} s median of {args.repeats} "
                      f"({', '.join(f'{t:.2f}' for t in times[name])}); {translation!r}")
                lines.append({"commit": commit_of(tree), "workload": "translate one sentence",
                              "wall_s": round(median, 3), "runs_s": [round(t, 3) for t in times[name]]})
            if args.record:
                record(lines, " ".join(["python", *sys.argv]))
        finally:
            if args.base:
                subprocess.run(["git", "worktree", "remove", "--force", str(trees["base"])], cwd=REPO,
                               capture_output=True)


if __name__ == "__main__":
    main()

"""aelab bench vs the PyTorch reference (../shared/bench/torch_ref.py), one after the other.

    python experiments/speed/compare.py --torch_python=/tmp/torchvenv/bin/python [--repeats=3]

For each workload and repeat, runs `aelab bench --workload=W --json` and
`torch_ref.py --workload W --json` as separate processes, alternating, and
prints the median examples/s of each and their ratio (aelab / torch) as a
Markdown table, plus every raw JSON line to --out. The machine is shared and
noisy: only ratios from the same session mean anything.
"""

import argparse
import json
import pathlib
import statistics
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]
TORCH_REF = REPO.parent / "shared" / "bench" / "torch_ref.py"
WORKLOADS = ("mlp_ae", "conv_ae", "mlp_vae")


def run_json(command):
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--torch_python", required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    raw, rows = [], []
    for workload in args.workloads.split(","):
        ours, theirs = [], []
        for _ in range(args.repeats):
            ours.append(run_json([sys.executable, "-m", "aelab.main", "bench", f"--workload={workload}", "--json"]))
            theirs.append(run_json([args.torch_python, str(TORCH_REF), "--workload", workload, "--json"]))
        raw += ours + theirs
        median = lambda runs, key: statistics.median(r[key] for r in runs)  # noqa: E731
        rows.append((workload, median(ours, "train_examples_per_s"), median(theirs, "train_examples_per_s"),
                     median(ours, "eval_examples_per_s"), median(theirs, "eval_examples_per_s"),
                     median(ours, "compile_s"), median(ours, "peak_fraction")))
    print("| workload | aelab train ex/s | torch train ex/s | train ratio | aelab eval ex/s | torch eval ex/s "
          "| eval ratio | aelab compile s | aelab fraction of matmul peak |")
    print("|---|---|---|---|---|---|---|---|---|")
    for w, a, t, ae, te, c, p in rows:
        print(f"| {w} | {a:,.0f} | {t:,.0f} | **{a / t:.2f}x** | {ae:,.0f} | {te:,.0f} | **{ae / te:.2f}x** "
              f"| {c:.2f} | {p:.3f} |")
    if args.out:
        pathlib.Path(args.out).write_text("".join(json.dumps(r) + "\n" for r in raw))


if __name__ == "__main__":
    main()

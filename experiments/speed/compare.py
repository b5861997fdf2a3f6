"""aelab bench vs the PyTorch reference (../shared/bench/torch_ref.py), one after the other.

    python experiments/speed/compare.py --torch_python=/tmp/torchvenv/bin/python [--repeats=3] [--with_ynn]

For each workload and repeat, runs `aelab bench --workload=W --json` and
`torch_ref.py --workload W --json` as separate processes, alternating, and
prints the median examples/s of each and their ratio (aelab / torch) as a
Markdown table, plus every raw JSON line to --out. `--with_ynn` also runs
`aelab bench --cpu_ynn_dots` (XLA's default YNNPACK matmuls, which aelab turns
off on CPU) in the same rotation and adds its ratios. The machine is shared and
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
    parser.add_argument("--with_ynn", action="store_true")
    args = parser.parse_args()
    raw, rows, ynn_rows = [], [], []
    median = lambda runs, key: statistics.median(r[key] for r in runs)  # noqa: E731
    for workload in args.workloads.split(","):
        ours, theirs, ynn = [], [], []
        aelab = [sys.executable, "-m", "aelab.main", "bench", f"--workload={workload}", "--json"]
        for _ in range(args.repeats):
            ours.append(run_json(aelab))
            theirs.append(run_json([args.torch_python, str(TORCH_REF), "--workload", workload, "--json"]))
            if args.with_ynn:
                ynn.append(run_json(aelab + ["--cpu_ynn_dots"]))
        raw += ours + theirs + ynn
        rows.append((workload, median(ours, "train_examples_per_s"), median(theirs, "train_examples_per_s"),
                     median(ours, "eval_examples_per_s"), median(theirs, "eval_examples_per_s"),
                     median(ours, "compile_s"), median(ours, "peak_fraction")))
        if ynn:
            ynn_rows.append((workload, median(ynn, "train_examples_per_s") / rows[-1][2],
                             median(ynn, "eval_examples_per_s") / rows[-1][4]))
    print("| workload | aelab train ex/s | torch train ex/s | train ratio | aelab eval ex/s | torch eval ex/s "
          "| eval ratio | aelab compile s | aelab fraction of matmul peak |")
    print("|---|---|---|---|---|---|---|---|---|")
    for w, a, t, ae, te, c, p in rows:
        print(f"| {w} | {a:,.0f} | {t:,.0f} | **{a / t:.2f}x** | {ae:,.0f} | {te:,.0f} | **{ae / te:.2f}x** "
              f"| {c:.2f} | {p:.3f} |")
    if ynn_rows:
        print("\n| workload | train ratio with YNNPACK dots | eval ratio with YNNPACK dots |\n|---|---|---|")
        for w, train, evaluation in ynn_rows:
            print(f"| {w} | {train:.2f}x | {evaluation:.2f}x |")
    if args.out:
        pathlib.Path(args.out).write_text("".join(json.dumps(r) + "\n" for r in raw))


if __name__ == "__main__":
    main()

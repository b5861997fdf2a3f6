"""aelab bench vs the PyTorch reference (../shared/bench/torch_ref.py), one after the other.

    python experiments/speed/compare.py --torch_python=/tmp/torchvenv/bin/python [--repeats=3] \
        [--also=--cpu_ynn_dots --also=--nocpu_ynn_dots] [--record]

For each workload and repeat, runs `aelab bench --workload=W --json` and
`torch_ref.py --workload W --json` as separate processes, alternating, and
prints the median examples/s of each and their ratio (aelab / torch) as a
Markdown table. `--record` appends every raw JSON line, with the commit it
measured, the date, the machine and the command, to
experiments/speed/results.jsonl. Each `--also=FLAGS` runs `aelab bench FLAGS`
too, in the same rotation, and adds its ratios (e.g. `--cpu_ynn_dots`: YNNPACK
matmuls everywhere; `--nocpu_ynn_dots`: nowhere). The machine is shared and
noisy: only ratios from the same run mean anything.
"""

import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[2]
TORCH_REF = REPO.parent / "shared" / "bench" / "torch_ref.py"
WORKLOADS = ("mlp_ae", "conv_ae", "mlp_vae", "resnet_vae", "transformer_mt")


RESULTS = REPO / "experiments" / "speed" / "results.jsonl"


def commit() -> str:
    """The commit this tree measures ("+changes" when aelab/ differs from it)."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout
    dirty = subprocess.run(["git", "status", "--porcelain", "aelab"], cwd=REPO, capture_output=True, text=True).stdout
    return head.strip() + ("+changes" if dirty.strip() else "")


def record(lines: list[dict], command: str) -> None:
    """Appends raw bench lines to results.jsonl, each with its date, machine and command (and the
    commit it measured, where the line does not carry one)."""
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    machine = f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores"
    with open(RESULTS, "a") as f:
        for line in lines:
            f.write(json.dumps({"commit": commit(), **line, "date": when, "machine": machine,
                                "command": command}) + "\n")


def run_json(command):
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--torch_python", required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--record", action="store_true", help="append the raw lines to results.jsonl")
    parser.add_argument("--also", action="append", default=[], help="extra `aelab bench` flags, a variant")
    args = parser.parse_args()
    raw, rows, variant_rows = [], [], []
    median = lambda runs, key: statistics.median(r[key] for r in runs)  # noqa: E731
    for workload in args.workloads.split(","):
        ours, theirs, variants = [], [], {flags: [] for flags in args.also}
        aelab = [sys.executable, "-m", "aelab.main", "bench", f"--workload={workload}", "--json"]
        for _ in range(args.repeats):
            ours.append(run_json(aelab))
            theirs.append(run_json([args.torch_python, str(TORCH_REF), "--workload", workload, "--json"])
                          | {"commit": "torch_ref.py"})
            for flags, runs in variants.items():
                runs.append(run_json(aelab + flags.split()) | {"variant": flags})
        raw += ours + theirs + [r for runs in variants.values() for r in runs]
        rows.append((workload, median(ours, "train_examples_per_s"), median(theirs, "train_examples_per_s"),
                     median(ours, "eval_examples_per_s"), median(theirs, "eval_examples_per_s"),
                     median(ours, "compile_s"), median(ours, "peak_fraction")))
        for flags, runs in variants.items():
            variant_rows.append((workload, flags, median(runs, "train_examples_per_s") / rows[-1][2],
                                 median(runs, "eval_examples_per_s") / rows[-1][4]))
    print("| workload | aelab train ex/s | torch train ex/s | train ratio | aelab eval ex/s | torch eval ex/s "
          "| eval ratio | aelab compile s | aelab fraction of matmul peak |")
    print("|---|---|---|---|---|---|---|---|---|")
    for w, a, t, ae, te, c, p in rows:
        print(f"| {w} | {a:,.0f} | {t:,.0f} | **{a / t:.2f}x** | {ae:,.0f} | {te:,.0f} | **{ae / te:.2f}x** "
              f"| {c:.2f} | {p:.3f} |")
    if variant_rows:
        print("\n| workload | aelab bench flags | train ratio | eval ratio |\n|---|---|---|---|")
        for w, flags, train, evaluation in variant_rows:
            print(f"| {w} | `{flags}` | {train:.2f}x | {evaluation:.2f}x |")
    if args.record:
        record(raw, " ".join(["python", *sys.argv]))


if __name__ == "__main__":
    main()

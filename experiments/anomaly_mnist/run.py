"""One-class MNIST anomaly detection for each of the ten digits, with the PCA baseline.

    python experiments/anomaly_mnist/run.py --data=idx:../shared/data/mnist --workdir=runs/anomaly_mnist

Trains configs/mnist_anomaly.py once per digit (resuming finished digits), runs
`aelab anomaly` on each, and writes results.json and results.md (AUROC per
digit and the mean, for every score, beside PCA and the published Deep SVDD).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import time

import numpy as np

from aelab import sweep, train
from aelab.config import from_file
from aelab.uses import anomaly

REPO = pathlib.Path(__file__).resolve().parents[2]
DEEP_SVDD = [98.0, 99.7, 91.7, 91.9, 94.9, 88.5, 98.3, 94.6, 93.9, 96.5]  # Ruff et al. 2018, one-class


def config_for(digit: int, data: str, steps: int, overrides: list[str]):
    config = from_file(REPO / "configs" / "mnist_anomaly.py", f"digit={digit},steps={steps}")
    config.data.name = data
    config.train.progress = False
    return sweep.with_overrides(config, overrides)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="idx:../shared/data/mnist")
    parser.add_argument("--workdir", default="runs/anomaly_mnist")
    parser.add_argument("--steps", type=int, default=10000)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for every digit, e.g. --set loss=mse")
    args = parser.parse_args()
    rows, start = [], time.time()
    for digit in range(10):
        workdir = os.path.join(args.workdir, f"digit{digit}")
        t0 = time.time()
        train.train_and_evaluate(config_for(digit, args.data, args.steps, args.set), workdir)
        anomaly.anomaly(workdir)
        with open(os.path.join(workdir, "uses", "anomaly.json")) as f:
            report = json.load(f)
        rows.append({"digit": digit, "seconds": round(time.time() - t0, 1),
                     "auroc_by_score": report["auroc_by_score"],
                     "pca_auroc": report["baselines"]["pca"]["auroc"]})
        print(f"digit {digit}: " + ", ".join(f"{k} {100 * v:.1f}" for k, v in report["auroc_by_score"].items())
              + f"; PCA {100 * rows[-1]['pca_auroc']:.1f} ({rows[-1]['seconds']} s)", flush=True)
    scores = sorted(rows[0]["auroc_by_score"])
    means = {s: float(np.mean([r["auroc_by_score"][s] for r in rows])) for s in scores}
    best = max(means, key=means.get)
    summary = {"rows": rows, "mean_auroc_by_score": means, "best_score": best,
               "mean_pca_auroc": float(np.mean([r["pca_auroc"] for r in rows])),
               "total_seconds": round(time.time() - start, 1)}
    with open(os.path.join(args.workdir, "results.json"), "w") as f:
        json.dump(summary, f, indent=2)
    lines = ["| digit | " + " | ".join(f"aelab `{s}`" for s in scores) + " | PCA | Deep SVDD |",
             "|---" * (len(scores) + 3) + "|"]
    for r, svdd in zip(rows, DEEP_SVDD):
        lines.append(f"| {r['digit']} | " + " | ".join(f"{100 * r['auroc_by_score'][s]:.1f}" for s in scores)
                     + f" | {100 * r['pca_auroc']:.1f} | {svdd:.1f} |")
    lines.append("| **mean** | " + " | ".join(f"**{100 * means[s]:.1f}**" for s in scores)
                 + f" | {100 * summary['mean_pca_auroc']:.1f} | {np.mean(DEEP_SVDD):.1f} |")
    with open(os.path.join(args.workdir, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"best score: {best} (mean AUROC {100 * means[best]:.2f}); total {summary['total_seconds']} s")


if __name__ == "__main__":
    main()

"""One-class MNIST anomaly detection for each of the ten digits, with the PCA baseline.

    python experiments/anomaly_mnist/run.py --data=idx:../shared/data/mnist --workdir=runs/anomaly_mnist

Trains configs/mnist_anomaly.py once per digit and seed (resuming finished
runs), runs `aelab anomaly` on each, and writes
experiments/anomaly_mnist/results.json: per digit and seed, the validation and
test AUROC of every score, PCA's test AUROC, and the provenance. The score
reported is chosen by mean validation AUROC (validation keeps every class, none
of it test); its test AUROC is read once, and given as mean and standard
deviation over the seeds, beside PCA and the published Deep SVDD.
"""

from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np

from aelab import provenance
from aelab.uses import anomaly

RESULTS = pathlib.Path(__file__).with_name("results.json")
DEEP_SVDD = [98.0, 99.7, 91.7, 91.9, 94.9, 88.5, 98.3, 94.6, 93.9, 96.5]  # Ruff et al. 2018, one-class


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="idx:../shared/data/mnist")
    parser.add_argument("--workdir", default="runs/anomaly_mnist")
    parser.add_argument("--steps", type=int, default=10000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for every digit, e.g. --set loss=mse")
    args = parser.parse_args()
    begun = provenance.start()

    def config_for(digit: int, seed: int):
        return provenance.experiment_config("mnist_anomaly.py", f"digit={digit}", data=args.data, seed=seed,
                                            steps=args.steps, overrides=args.set)

    rows = anomaly.one_class_runs(config_for, list(range(10)), args.seeds, args.workdir, name="digit")
    result = {**anomaly.one_class_table(rows, name="digit"),
              "deep_svdd_mean_auroc": float(np.mean(DEEP_SVDD)), "overrides": args.set, "steps": args.steps,
              "runs": rows}
    if args.steps != 10000 or args.set:
        print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=1))
        return  # a variant or smoke test: printed, not published
    provenance.update_results(str(RESULTS), {"one_class_mnist": {**result, **provenance.record(begun)}})
    print(f"score chosen on validation: {result['chosen_score']}; test mean AUROC {result['test_mean_auroc']:.1f} "
          f"± {result['test_std_auroc']:.1f} over seeds {args.seeds} (validation {result['val_mean_auroc']:.1f}); "
          f"PCA {result['pca_mean_auroc']:.1f}")


if __name__ == "__main__":
    main()

"""One-class anomaly detection on CIFAR-10 for each of the ten classes, with the PCA baseline.

    python experiments/anomaly_cifar10/run.py --workdir=runs/anomaly_cifar10

Trains configs/cifar10_anomaly.py once per class and seed (seed 0 by default: ten runs
take over 15 minutes here; resuming finished runs), runs `aelab anomaly` on each, and
writes experiments/anomaly_cifar10/results.json: per class and seed, the validation and
test AUROC of every score, PCA's test AUROC, and the provenance. The score reported is
chosen by mean validation AUROC (validation keeps every class, none of it test); its test
AUROC is read once, beside PCA and the published one-class Deep SVDD and its convolutional
autoencoder baseline (Ruff et al. 2018).
"""

from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np

from aelab import provenance
from aelab.uses import anomaly

RESULTS = pathlib.Path(__file__).with_name("results.json")
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
# Ruff et al. 2018 (ICML), Table 1, CIFAR-10 AUROC (%): One-Class Deep SVDD per class; the mean
# of their deep convolutional autoencoder (DCAE) baseline.
DEEP_SVDD = [61.7, 65.9, 50.8, 59.1, 60.9, 65.7, 67.7, 67.3, 75.9, 73.1]
DCAE_MEAN = 59.7
STEPS = 2000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="images:../shared/data/cifar10")
    parser.add_argument("--workdir", default="runs/anomaly_cifar10")
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--classes", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for every class, e.g. --set model.latent_dim=32")
    args = parser.parse_args()
    begun = provenance.start()

    def config_for(normal: int, seed: int):
        return provenance.experiment_config("cifar10_anomaly.py", f"normal={normal}", data=args.data, seed=seed,
                                            steps=args.steps, overrides=args.set)

    rows = anomaly.one_class_runs(config_for, args.classes, args.seeds, args.workdir)
    result = {**anomaly.one_class_table(rows), "class_names": CLASSES,
              "deep_svdd_auroc_by_class": dict(enumerate(DEEP_SVDD)),
              "deep_svdd_mean_auroc": float(np.mean(DEEP_SVDD)), "dcae_mean_auroc": DCAE_MEAN,
              "overrides": args.set, "steps": args.steps, "runs": rows}
    if args.steps != STEPS or args.set or args.classes != list(range(10)):
        print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=1))
        return  # a variant or smoke test: printed, not published
    provenance.update_results(str(RESULTS), {"one_class_cifar10": {**result, **provenance.record(begun)}})
    print(f"score chosen on validation: {result['chosen_score']}; test mean AUROC {result['test_mean_auroc']:.1f} "
          f"over seeds {args.seeds} (validation {result['val_mean_auroc']:.1f}); PCA {result['pca_mean_auroc']:.1f}; "
          f"Deep SVDD {result['deep_svdd_mean_auroc']:.1f}, DCAE {DCAE_MEAN}")


if __name__ == "__main__":
    main()

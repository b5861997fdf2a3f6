"""Hinton & Salakhutdinov (2006), Science 313:504, Fig. 2/Table: the MNIST 784-1000-500-250-30
autoencoder vs PCA at 30 dimensions, test recon_sse (sum of squared errors per image).

    python experiments/hinton2006/run.py --workdir=runs/hinton2006

Trains configs/mnist_ae.py from random initialization (no RBM pretraining)
in each of the VARIANTS below (seed 0), chooses the variant with the lowest
validation recon_sse (every variant holds out the same 2% of the training
images, so they are scored on one validation set), then trains the chosen one
with two more seeds and writes experiments/hinton2006/results.json: every
variant's validation (and test) figure, the chosen variant's test and
validation mean and standard deviation over the seeds, PCA-30, the paper's
numbers and the provenance. Test figures play no part in the choice. Runs
resume, so an interrupted invocation continues.
"""

from __future__ import annotations

import argparse
import os
import pathlib

import numpy as np

from aelab import provenance, sweep, train
from aelab.config import from_file
from aelab.writer import training_seconds

REPO = pathlib.Path(__file__).resolve().parents[2]
RESULTS = pathlib.Path(__file__).with_name("results.json")
PAPER = {"PCA": 13.87, "logistic PCA": 8.01, "deep autoencoder (RBM-pretrained)": 3.00}
# On top of configs/mnist_ae.py (AdamW, weight decay 0.1, warm-up + cosine). Every variant holds
# out 2% for validation (58,800 training images): one validation set scores them all.
COMMON = ["data.val_fraction=0.02"]
VARIANTS = {
    "adamw_wd0.1_30k": ["train.num_steps=30000"],
    "adamw_wd0.1_20k": ["train.num_steps=20000"],
    "adamw_wd0.3_30k": ["train.num_steps=30000", "optimizer.weight_decay=0.3"],
    "adam_30k": ["train.num_steps=30000", "optimizer.name=adam"],
}


def config_for(data: str, overrides: list[str], seed: int, steps: int):
    config = from_file(REPO / "configs" / "mnist_ae.py")
    config.data.name = data
    config.seed = seed
    config.train.progress = False
    config = sweep.with_overrides(config, [*COMMON, *overrides])
    if steps:
        config.train.num_steps = steps
    return config


def run(data: str, workdir: str, overrides: list[str], seed: int, steps: int) -> dict:
    summary = train.train_and_evaluate(config_for(data, overrides, seed, steps), workdir)
    return {"seed": seed, "val": summary["val"]["recon_sse"], "test": summary["eval"]["recon_sse"],
            "pca": summary["baselines"]["pca"]["recon_sse"],
            "training_seconds": round(training_seconds(os.path.join(workdir, "metrics.jsonl")), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="idx:../shared/data/mnist")
    parser.add_argument("--workdir", default="runs/hinton2006")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", action="append", choices=sorted(VARIANTS), help="variants to compare")
    parser.add_argument("--steps", type=int, default=0, help="override every run's steps (smoke tests)")
    args = parser.parse_args()
    begun = provenance.start()
    variants = {}
    for name in args.only or VARIANTS:
        variants[name] = run(args.data, os.path.join(args.workdir, name, f"seed{args.seeds[0]}"),
                             VARIANTS[name], args.seeds[0], args.steps)
        print(f"{name}: validation {variants[name]['val']:.3f}", flush=True)
    chosen = min(variants, key=lambda name: variants[name]["val"])
    seeds = [variants[chosen]] + [run(args.data, os.path.join(args.workdir, chosen, f"seed{seed}"),
                                      VARIANTS[chosen], seed, args.steps) for seed in args.seeds[1:]]
    test, val = [r["test"] for r in seeds], [r["val"] for r in seeds]
    spread = (lambda xs: float(np.std(xs, ddof=1)) if len(xs) > 1 else 0.0)  # noqa: E731
    result = {"chosen_variant": chosen, "chosen_on": "validation recon_sse, seed 0",
              "overrides": COMMON + VARIANTS[chosen], "variants": variants, "seeds": seeds,
              "test_mean": float(np.mean(test)), "test_std": spread(test),
              "val_mean": float(np.mean(val)), "val_std": spread(val),
              "pca": seeds[0]["pca"], "paper": PAPER}
    print(f"chosen on validation: {chosen}; test recon_sse {result['test_mean']:.3f} ± {result['test_std']:.3f} "
          f"(validation {result['val_mean']:.3f} ± {result['val_std']:.3f}) over seeds {args.seeds}; "
          f"PCA-30 {result['pca']:.2f}")
    if not args.steps:  # a smoke test publishes nothing
        provenance.update_results(str(RESULTS), {"hinton2006": {**result, **provenance.record(begun)}})


if __name__ == "__main__":
    main()

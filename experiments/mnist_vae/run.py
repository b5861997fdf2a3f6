"""The MNIST VAE (784-500-500-20, dynamically binarized): ELBO and IWAE likelihood, one seed.

    python experiments/mnist_vae/run.py --data=idx:../shared/data/mnist --workdir=runs/mnist_vae

Trains configs/mnist_vae.py (resuming an interrupted run) and writes
experiments/mnist_vae/results.json: test and validation neg_elbo, recon and
kl (nats per image), the test IWAE bound at k = 1,000, active units, the mean
reconstruction's recon_sse beside PCA-20, and the provenance. One seed: the
run takes longer than 15 minutes. Nothing is chosen: the config is fixed.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib

from aelab import provenance
from aelab.writer import training_seconds

RESULTS = pathlib.Path(__file__).with_name("results.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="idx:../shared/data/mnist")
    parser.add_argument("--workdir", default="runs/mnist_vae")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=0, help="override the steps (smoke tests)")
    args = parser.parse_args()
    begun = provenance.start()
    [(workdir, summary)] = provenance.train_seeds("mnist_vae.py", [args.seed], args.workdir, data=args.data,
                                                  steps=args.steps)
    ev, val = summary["eval"], summary["val"]
    row = {"config": "configs/mnist_vae.py", "seed": args.seed, "step": summary["step"],
           "units": "nats per image; recon_sse: squared error of the mean reconstruction, summed over pixels",
           "test": {k: ev[k] for k in ("neg_elbo", "nll", "recon", "kl", "recon_sse", "active_units")},
           "val": {k: val[k] for k in ("neg_elbo", "recon", "kl", "recon_sse")},
           "pca": summary["baselines"]["pca"], "data_sizes": summary["data"],
           "training_seconds": round(training_seconds(os.path.join(workdir, "metrics.jsonl")), 1),
           **provenance.record(begun)}
    print(json.dumps({k: row[k] for k in ("test", "val", "pca")}))
    if not args.steps:  # a smoke test publishes nothing
        provenance.update_results(str(RESULTS), {"mnist_vae": row})


if __name__ == "__main__":
    main()

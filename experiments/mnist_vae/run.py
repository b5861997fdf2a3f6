"""The MNIST VAE (784-500-500-20, dynamically binarized): ELBO and IWAE likelihood over three seeds.

    python experiments/mnist_vae/run.py --data=idx:../shared/data/mnist --workdir=runs/mnist_vae

Trains configs/mnist_vae.py with seeds 0, 1 and 2 (resuming interrupted runs, reading
finished ones back) and writes experiments/mnist_vae/results.json: test and validation
neg_elbo, recon and kl (nats per image), the test IWAE bound at k = 1,000, active units and
the mean reconstruction's recon_sse, each as mean and standard deviation over the seeds,
beside PCA-20, with the provenance. Nothing is chosen: the config is fixed.
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
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=0, help="override the steps (smoke tests)")
    args = parser.parse_args()
    begun = provenance.start()
    runs = provenance.train_seeds("mnist_vae.py", args.seeds, args.workdir, data=args.data, steps=args.steps)
    summaries = [summary for _, summary in runs]

    def figures(split: str, keys) -> dict:
        return {k: provenance.over_seeds([s[split][k] for s in summaries]) for k in keys}

    row = {"config": "configs/mnist_vae.py", "seeds": args.seeds, "step": summaries[0]["step"],
           "units": "nats per image; recon_sse: squared error of the mean reconstruction, summed over pixels",
           "test": figures("eval", ("neg_elbo", "nll", "recon", "kl", "recon_sse", "active_units")),
           "val": figures("val", ("neg_elbo", "recon", "kl", "recon_sse")),
           "pca": summaries[0]["baselines"]["pca"], "data_sizes": summaries[0]["data"],
           "training_seconds": [round(training_seconds(os.path.join(w, "metrics.jsonl")), 1) for w, _ in runs],
           **provenance.record(begun)}
    print(json.dumps({k: row[k] for k in ("test", "val", "pca")}))
    if not args.steps:  # a smoke test publishes nothing
        provenance.update_results(str(RESULTS), {"mnist_vae": row})


if __name__ == "__main__":
    main()

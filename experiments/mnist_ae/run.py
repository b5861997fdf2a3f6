"""The MNIST deep autoencoder (784-1000-500-250-30) over three seeds, and linear probes of its codes.

    python experiments/mnist_ae/run.py --data=idx:../shared/data/mnist --workdir=runs/mnist_ae

Trains configs/mnist_ae.py with seeds 0, 1 and 2 (resuming finished runs),
runs `aelab probe` on each, and writes experiments/mnist_ae/results.json:
row `mnist_ae` (test and validation recon_sse, mean and standard deviation
over the seeds, PCA-30) and row `probe` (linear-probe and 5-NN test accuracy
of the 30-d codes over the seeds, beside PCA-30 codes and raw pixels), each
with its provenance. Nothing is chosen: the config is fixed in advance.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib

from aelab import provenance
from aelab.uses import codes
from aelab.writer import training_seconds

RESULTS = pathlib.Path(__file__).with_name("results.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="idx:../shared/data/mnist")
    parser.add_argument("--workdir", default="runs/mnist_ae")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=0, help="override the steps (smoke tests)")
    args = parser.parse_args()
    begun = provenance.start()
    runs = provenance.train_seeds("mnist_ae.py", args.seeds, args.workdir, data=args.data, steps=args.steps)
    summaries = [summary for _, summary in runs]
    probes = []
    for workdir, _ in runs:
        with open(codes.probe(workdir)) as f:
            probes.append(json.load(f))
    trained = provenance.record(begun)
    ae = {"config": "configs/mnist_ae.py", "seeds": args.seeds, "step": summaries[0]["step"],
          "test": {"recon_sse": provenance.over_seeds([s["eval"]["recon_sse"] for s in summaries])},
          "val": {"recon_sse": provenance.over_seeds([s["val"]["recon_sse"] for s in summaries])},
          "pca": summaries[0]["baselines"]["pca"]["recon_sse"], "data_sizes": summaries[0]["data"],
          "training_seconds": [round(training_seconds(os.path.join(workdir, "metrics.jsonl")), 1)
                               for workdir, _ in runs], **trained}
    probe = {"features": "the 30-d codes of each seed's model, standardized", "seeds": args.seeds,
             "train_examples": probes[0]["train_examples"], "test_examples": probes[0]["test_examples"],
             "codes": {k: provenance.over_seeds([p["codes"][k] for p in probes])
                       for k in ("linear_probe_accuracy", "knn_accuracy")},
             "pca_30": probes[0]["pca_30"], "pixels": probes[0]["pixels"], **trained}
    print(json.dumps({"mnist_ae": ae["test"], "probe": probe["codes"]}))
    if not args.steps:  # a smoke test publishes nothing
        provenance.update_results(str(RESULTS), {"mnist_ae": ae, "probe": probe})


if __name__ == "__main__":
    main()

"""The quick start's digits autoencoder over three seeds, beside PCA with as many components.

    python experiments/digits_ae/run.py --workdir=runs/digits_ae_seeds

Trains configs/digits_ae.py (scikit-learn's 8x8 digits, bundled: no data
download) with seeds 0, 1 and 2, resuming finished runs, and writes
experiments/digits_ae/results.json: test and validation recon_sse per seed,
their mean and standard deviation, PCA's test recon_sse and the provenance.
"""

from __future__ import annotations

import argparse
import json
import pathlib

from aelab import provenance

RESULTS = pathlib.Path(__file__).with_name("results.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="runs/digits_ae_seeds")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=0, help="override the steps (smoke tests)")
    args = parser.parse_args()
    begun = provenance.start()
    summaries = [summary for _, summary in provenance.train_seeds("digits_ae.py", args.seeds, args.workdir,
                                                                  steps=args.steps)]
    row = {"config": "configs/digits_ae.py", "seeds": args.seeds, "step": summaries[0]["step"],
           "test": {"recon_sse": provenance.over_seeds([s["eval"]["recon_sse"] for s in summaries])},
           "val": {"recon_sse": provenance.over_seeds([s["val"]["recon_sse"] for s in summaries])},
           "pca": summaries[0]["baselines"]["pca"]["recon_sse"], "data_sizes": summaries[0]["data"],
           **provenance.record(begun)}
    print(json.dumps({k: v for k, v in row.items() if k != "versions"}))
    if not args.steps:  # a smoke test publishes nothing
        provenance.update_results(str(RESULTS), {"digits_ae": row})


if __name__ == "__main__":
    main()

"""Latent sweep on MNIST: reconstruction (AE) and rate, distortion and likelihood (VAE) against
the bottleneck size, beside PCA at the same size.

    python experiments/latent_sweep/run.py --data=idx:../shared/data/mnist --workdir=runs/latent_sweep [--only=ae|vae]

Runs the two `aelab sweep`s of README.md (latent sizes 2..64, seeds 0, 1, 2; the AE
configs/mnist_ae.py for 3,000 steps, the VAE configs/mnist_vae.py for 10,000 steps with the
IWAE bound at k = 100) in WORKDIR/ae and WORKDIR/vae (finished points are skipped,
interrupted ones resume) and writes experiments/latent_sweep/results.json: per size, test and
validation figures, mean and standard deviation over the seeds, beside PCA, and the
provenance. Nothing is chosen: the grid is fixed in advance.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib

from aelab import provenance, sweep
from aelab import workdir as wd
from aelab.config import from_file

REPO = pathlib.Path(__file__).resolve().parents[2]
RESULTS = pathlib.Path(__file__).with_name("results.json")
SIZES, SEEDS = (2, 4, 8, 16, 32, 64), (0, 1, 2)
# half: (config file, its argument, overrides, test metrics, validation metrics)
HALVES = {
    "ae": ("mnist_ae.py", "steps=3000", [], ("recon_sse",), ("recon_sse",)),
    "vae": ("mnist_vae.py", "steps=10000", ["vae.iw_samples=100"],
            ("neg_elbo", "nll", "recon", "kl", "recon_sse", "active_units"), ("neg_elbo", "recon", "kl")),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="idx:../shared/data/mnist")
    parser.add_argument("--workdir", default="runs/latent_sweep")
    parser.add_argument("--only", choices=sorted(HALVES), action="append")
    parser.add_argument("--steps", type=int, default=0, help="override the steps (smoke tests)")
    args = parser.parse_args()
    rows = {}
    for half in args.only or list(HALVES):
        config_file, arg, overrides, test_keys, val_keys = HALVES[half]
        begun = provenance.start()
        config = sweep.with_overrides(from_file(REPO / "configs" / config_file, arg),
                                      [f"data.name={args.data}", "train.progress=False", *overrides]
                                      + ([f"train.num_steps={args.steps}"] if args.steps else []))
        workdir = os.path.join(args.workdir, half)
        specs = [f"model.latent_dim={','.join(map(str, SIZES))}", f"seed={','.join(map(str, SEEDS))}"]
        record = sweep.run_sweep(config, workdir, specs)
        failed = [name for name, point in record["points"].items() if point["status"] != "done"]
        if failed:
            raise SystemExit(f"points not done: {', '.join(failed)}; rerun the command")
        by_size = {}
        for size in SIZES:
            summaries = [wd.read_json(os.path.join(workdir, sweep.POINTS, sweep.point_name(
                {"model.latent_dim": size, "seed": seed}), wd.SUMMARY)) for seed in SEEDS]
            by_size[str(size)] = {
                "test": {k: provenance.over_seeds([s["eval"][k] for s in summaries]) for k in test_keys},
                "val": {k: provenance.over_seeds([s["val"][k] for s in summaries]) for k in val_keys},
                "pca_recon_sse": summaries[0]["baselines"]["pca"]["recon_sse"]}
        rows[f"latent_sweep_{half}"] = {
            "config": f"configs/{config_file}:{arg}", "overrides": overrides, "data": args.data,
            "sizes": list(SIZES), "seeds": list(SEEDS), "by_size": by_size, **provenance.record(begun)}
        print(json.dumps({size: {k: v["mean"] for k, v in row["test"].items()} | {"pca": row["pca_recon_sse"]}
                          for size, row in by_size.items()}), flush=True)
    if not args.steps:  # a smoke test publishes nothing
        provenance.update_results(str(RESULTS), rows)


if __name__ == "__main__":
    main()

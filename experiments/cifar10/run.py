"""CIFAR-10 VAEs: the residual convolutional VAE beside the plain convolutional one and PCA,
in bits per dimension and PSNR on the test split.

    python experiments/cifar10/run.py --workdir=runs/cifar10

Trains configs/cifar10_vae.py twice with one schedule fixed in advance (STEPS steps, batch
64, a 128-d code, the 5-logistic mixture likelihood; nothing is chosen): the residual VAE at
`width=32` (stages of 32, 64 and 128 channels) and the plain convolutional VAE (3x3 stride-2
convolutions of 32, 64 and 128 channels, transposed back). Each is resumed if interrupted.
Writes experiments/cifar10/results.json: per model, test and validation bits/dim of the ELBO,
the IWAE bound (k = 10) in bits/dim, PSNR of the mean reconstruction, KL and active units,
training seconds; PCA-128 beside them (PSNR of its projection, and bits/dim of probabilistic
PCA as a likelihood); and the provenance. Each model's test reconstructions and samples are
copied here as MODEL_reconstructions.png and MODEL_samples.png.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil

from aelab import provenance, train
from aelab.writer import training_seconds

HERE = pathlib.Path(__file__).parent
RESULTS = HERE / "results.json"
STEPS = 5000
IW_SAMPLES = 10  # the k = 100 bound would take as long as the training here
RUNS = {
    "resnet": ("residual conv VAE (GroupNorm, SiLU; 32-64-128)", "width=32", {}),
    "conv": ("plain conv VAE (strided 3x3 convolutions; 32-64-128)", "width=32",
             {"model.arch": "conv", "model.conv.channels": (32, 64, 128), "model.conv.strides": (2, 2, 2),
              "model.conv.kernel_size": 3, "model.conv.upsample": "transpose"}),
}
FIGURES = ("reconstructions.png", "samples.png")
METRICS = ("bits_per_dim", "nll_bits_per_dim", "neg_elbo", "nll", "psnr", "recon_sse", "kl", "active_units")


def config_for(model: str, data_name: str, steps: int, seed: int):
    _, arg, values = RUNS[model]
    return provenance.experiment_config("cifar10_vae.py", arg, data=data_name, seed=seed, steps=steps,
                                        values={"vae.iw_samples": IW_SAMPLES, "vae.iw_chunk": IW_SAMPLES, **values})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="images:../shared/data/cifar10")
    parser.add_argument("--workdir", default="runs/cifar10")
    parser.add_argument("--only", choices=sorted(RUNS), action="append", help="train only these models")
    parser.add_argument("--steps", type=int, default=STEPS, help="a different length (printed, not published)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    begun = provenance.start()
    rows = {}
    for model in args.only or list(RUNS):
        workdir = os.path.join(args.workdir, model)
        summary = train.train_and_evaluate(config_for(model, args.data, args.steps, args.seed), workdir)
        rows[model] = {
            "model": RUNS[model][0], "config": f"configs/cifar10_vae.py:{RUNS[model][1]},steps={args.steps}",
            "overrides": RUNS[model][2], "seed": args.seed, "step": summary["step"], "iw_samples": IW_SAMPLES,
            "test": {k: summary["eval"][k] for k in METRICS if k in summary["eval"]},
            "val": {k: summary["val"][k] for k in METRICS if k in summary["val"]},
            "data_sizes": summary["data"],
            "training_seconds": round(training_seconds(os.path.join(workdir, "metrics.jsonl")), 1)}
        print(model, json.dumps({k: rows[model][k] for k in ("test", "val")}), flush=True)
        pca = summary["baselines"]["pca"]  # fit by each run on the same training images, code size and seed
    print("PCA", json.dumps(pca), flush=True)
    if args.steps != STEPS:
        return  # a smoke test or a variant: printed, not published
    for model in rows:
        for name in FIGURES:
            shutil.copyfile(os.path.join(args.workdir, model, "figures", name), HERE / f"{model}_{name}")
    provenance.update_results(str(RESULTS), {model: {**row, **provenance.record(begun)} for model, row in rows.items()})
    provenance.update_results(str(RESULTS), {"pca": {"model": "PCA-128", **pca, **provenance.record(begun)}})


if __name__ == "__main__":
    main()

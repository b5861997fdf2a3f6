"""VQ-VAE on MNIST: the codebook by gradients or by moving averages, and a prior over its codes.

    python experiments/vq_mnist/run.py --data=idx:../shared/data/mnist --workdir=runs/vq_mnist

Trains configs/mnist_vqvae.py twice per seed (0, 1, 2): with the codebook loss, and with
`:ema` (moving-average codebook, dead-code restarts); then configs/mnist_vq_prior.py on each
EMA VQ-VAE (same seed). Writes experiments/vq_mnist/results.json: test and validation
codebook perplexity, dead codes and recon_sse of both VQ-VAEs, the prior's test and
validation NLL (nats per image, bits per code token, bits per image dimension) beside its
baselines, each as mean and standard deviation over the seeds, with the provenance; and
copies seed 0's prior samples to experiments/vq_mnist/samples.png. Finished runs are read
back, interrupted ones resume. Nothing is chosen: the configs are fixed.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil

from aelab import provenance

HERE = pathlib.Path(__file__).resolve().parent
RESULTS = HERE / "results.json"
VARIANTS = {"codebook_loss": None, "ema": "ema"}  # name -> configs/mnist_vqvae.py arg
VQ_KEYS = ("perplexity", "dead_codes", "recon_sse", "bce")
PRIOR_KEYS = ("nll", "bits_per_token", "bits_per_dim", "token_accuracy")


def figures(summaries: list[dict], split: str, keys) -> dict:
    return {k: provenance.over_seeds([s[split][k] for s in summaries]) for k in keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="idx:../shared/data/mnist")
    parser.add_argument("--workdir", default="runs/vq_mnist")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=0, help="override every run's steps (smoke tests)")
    args = parser.parse_args()
    begun = provenance.start()
    row = {"seeds": args.seeds, "data": args.data, "vqvae": {}}
    for name, arg in VARIANTS.items():
        runs = provenance.train_seeds("mnist_vqvae.py", args.seeds, os.path.join(args.workdir, name), arg=arg,
                                      data=args.data, steps=args.steps)
        summaries = [s for _, s in runs]
        row["vqvae"][name] = {"config": "configs/mnist_vqvae.py" + (f":{arg}" if arg else ""),
                              "test": figures(summaries, "eval", VQ_KEYS), "val": figures(summaries, "val", VQ_KEYS),
                              "pca": summaries[0]["baselines"]["pca"]}
    priors = []
    for seed in args.seeds:
        vqvae = os.path.join(args.workdir, "ema", f"seed{seed}")
        priors += provenance.train_seeds("mnist_vq_prior.py", [seed], os.path.join(args.workdir, "prior"),
                                         arg=f"vqvae={vqvae}", steps=args.steps)
    summaries = [s for _, s in priors]
    row["prior"] = {"config": "configs/mnist_vq_prior.py:vqvae=WORKDIR/ema/seedS", "on": "ema",
                    "test": figures(summaries, "eval", PRIOR_KEYS), "val": figures(summaries, "val", PRIOR_KEYS),
                    "baselines": summaries[0]["baselines"], "code_tokens": summaries[0]["data"]["code_tokens"],
                    "codebook_size": summaries[0]["data"]["codebook_size"]}
    row.update(provenance.record(begun))
    print(json.dumps({"vqvae": {n: v["test"] for n, v in row["vqvae"].items()}, "prior": row["prior"]["test"]}))
    if not args.steps:  # a smoke test publishes nothing
        shutil.copyfile(os.path.join(priors[0][0], "figures", "samples.png"), HERE / "samples.png")
        provenance.update_results(str(RESULTS), {"vq_mnist": row})


if __name__ == "__main__":
    main()

"""Denoising autoencoder on MNIST (Gaussian noise, sigma 0.3) over three seeds, against the plain one.

    python experiments/mnist_dae/run.py --data=idx:../shared/data/mnist --workdir=runs/mnist_dae \
        --plain=runs/mnist_ae

Trains configs/mnist_dae.py:noise=gaussian,level=0.3 with seeds 0, 1 and 2
(resuming finished runs), runs `aelab denoise` at every noise of NOISES on
each, and the same on the plain autoencoders of experiments/mnist_ae/run.py
(`--plain`, its workdir: seed S against seed S; they are trained first if
missing). Writes experiments/mnist_dae/results.json: per noise, the noisy,
denoised and plain-AE PSNR (dB) and SSIM on the test set, mean and standard
deviation over the seeds, and the provenance. Nothing is chosen.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib

from aelab import provenance
from aelab.uses import denoise

RESULTS = pathlib.Path(__file__).with_name("results.json")
NOISES = ["gaussian:0.1,0.3,0.5", "mask:0.5", "salt_and_pepper:0.2"]


def denoised(workdir: str, out_dir: str) -> list[dict]:
    path = denoise.denoise(workdir, NOISES, out_dir=out_dir)[0]
    with open(path) as f:
        return json.load(f)["results"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="idx:../shared/data/mnist")
    parser.add_argument("--workdir", default="runs/mnist_dae")
    parser.add_argument("--plain", default="runs/mnist_ae", help="workdir of experiments/mnist_ae/run.py")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=0, help="override the steps (smoke tests)")
    args = parser.parse_args()
    begun = provenance.start()
    dae = provenance.train_seeds("mnist_dae.py", args.seeds, args.workdir, arg="noise=gaussian,level=0.3",
                                 data=args.data, steps=args.steps)
    plain = provenance.train_seeds("mnist_ae.py", args.seeds, args.plain, data=args.data, steps=args.steps)
    per_seed = [(denoised(d, os.path.join(d, "uses")), denoised(p, os.path.join(d, "uses", "plain_ae")))
                for (d, _), (p, _) in zip(dae, plain)]
    noises = []
    for i, first in enumerate(per_seed[0][0]):
        def over(which, key, i=i):
            return provenance.over_seeds([seed[which][i][key] for seed in per_seed])
        noises.append({"noise": first["noise"], "level": first["level"],
                       "noisy": {"psnr": over(0, "psnr_noisy"), "ssim": over(0, "ssim_noisy")},
                       "denoising_ae": {"psnr": over(0, "psnr_denoised"), "ssim": over(0, "ssim_denoised")},
                       "plain_ae": {"psnr": over(1, "psnr_denoised"), "ssim": over(1, "ssim_denoised")}})
    row = {"config": "configs/mnist_dae.py:noise=gaussian,level=0.3", "seeds": args.seeds,
           "step": dae[0][1]["step"], "split": "test", "units": {"psnr": "dB"}, "noises": noises,
           "clean_recon_sse": provenance.over_seeds([s["eval"]["recon_sse"] for _, s in dae]),
           "val_recon_sse": provenance.over_seeds([s["val"]["recon_sse"] for _, s in dae]),
           **provenance.record(begun)}
    for n in noises:
        print(f"{n['noise']} {n['level']:g}: noisy {n['noisy']['psnr']['mean']:.2f} dB, denoising AE "
              f"{n['denoising_ae']['psnr']['mean']:.2f}, plain AE {n['plain_ae']['psnr']['mean']:.2f}")
    if not args.steps:  # a smoke test publishes nothing
        provenance.update_results(str(RESULTS), {"mnist_dae": row})


if __name__ == "__main__":
    main()

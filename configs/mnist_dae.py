"""Denoising autoencoder on MNIST: masking noise on the input, the clean image as target.

    aelab train --config=configs/mnist_dae.py --config.data.name=idx:../shared/data/mnist --workdir=runs/mnist_dae
    aelab train --config=configs/mnist_dae.py:noise=gaussian,level=0.3 --config.data.name=idx:../shared/data/mnist --workdir=runs/mnist_dae_gauss

Reports PSNR (dB) of the corrupted input and of the reconstruction against the clean image.
"""

import ml_collections

from aelab.config import base_config, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_arg(arg, latent=30, noise="mask", level=0.3)
    config = base_config()
    config.data.name = "mnist"
    config.model.latent_dim = args.latent
    config.model.hidden = (1000, 500, 250)
    config.corruption.kind = args.noise
    config.corruption.level = args.level
    config.train.num_steps = 20000
    config.train.batch_size = 256
    config.train.eval_every = 1000
    config.train.checkpoint_every = 1000
    return config

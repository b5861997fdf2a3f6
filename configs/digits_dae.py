"""Denoising autoencoder on the bundled 8x8 digits: masking noise on the input, the clean image as target.

    aelab train --config=configs/digits_dae.py --workdir=runs/digits_dae
    aelab train --config=configs/digits_dae.py:noise=gaussian,level=0.3 --workdir=runs/digits_dae_gauss

Reports PSNR (dB) of the corrupted input and of the reconstruction against the clean image.
"""

import ml_collections

from aelab.config import base_config, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_arg(arg, latent=8, noise="mask", level=0.3)
    config = base_config()
    config.data.name = "digits"
    config.model.latent_dim = args.latent
    config.model.hidden = (256, 128)
    config.corruption.kind = args.noise
    config.corruption.level = args.level
    config.train.num_steps = 3000
    config.train.batch_size = 64
    config.train.eval_every = 1000
    config.train.checkpoint_every = 1000
    return config

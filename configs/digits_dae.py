"""Denoising autoencoder on the bundled 8x8 digits: masking noise on the input, the clean image as target.

    aelab train --config=configs/digits_dae.py --workdir=runs/digits_dae
    aelab train --config=configs/digits_dae.py:noise=gaussian,level=0.3 --workdir=runs/digits_dae_gauss

Reports PSNR (dB) of the corrupted input and of the reconstruction against the clean image.
"""

from aelab.config import parse_arg, preset


def get_config(arg=None):
    args = parse_arg(arg, latent=8, noise="mask", level=0.3)
    config = preset("digits")
    config.model.latent_dim = args.latent
    config.corruption.kind = args.noise
    config.corruption.level = args.level
    return config

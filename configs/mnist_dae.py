"""Denoising autoencoder on MNIST: masking noise on the input, the clean image as target.

    aelab train --config=configs/mnist_dae.py --config.data.name=idx:../shared/data/mnist --workdir=runs/mnist_dae
    aelab train --config=configs/mnist_dae.py:noise=gaussian,level=0.3 --config.data.name=idx:../shared/data/mnist --workdir=runs/mnist_dae_gauss

Reports PSNR (dB) of the corrupted input and of the reconstruction against the clean image.
"""

from aelab.config import parse_arg, preset


def get_config(arg=None):
    args = parse_arg(arg, latent=30, noise="mask", level=0.3)
    config = preset("mnist")
    config.model.latent_dim = args.latent
    config.corruption.kind = args.noise
    config.corruption.level = args.level
    return config

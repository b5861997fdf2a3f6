"""MLP autoencoder on scikit-learn's bundled 8x8 digits: the embedded default (no network, no files).

    aelab train --config=configs/digits_ae.py --workdir=runs/digits_ae
    aelab train --config=configs/digits_ae.py:latent=2 --workdir=runs/digits_ae2
    aelab train --config=configs/digits_ae.py:arch=conv --workdir=runs/digits_conv

Trains in well under a minute on 2 CPU cores; summary.json puts its eval
recon_sse beside PCA's at the same latent size.
"""

from aelab.config import parse_arg, preset


def get_config(arg=None):
    args = parse_arg(arg, latent=8, arch="mlp")
    config = preset("digits")  # MLP 64-256-128-latent, mirrored; bce loss
    config.model.arch = args.arch
    config.model.latent_dim = args.latent
    return config

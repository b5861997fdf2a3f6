"""MLP autoencoder on scikit-learn's bundled 8x8 digits: the embedded default (no network, no files).

    aelab train --config=configs/digits_ae.py --workdir=runs/digits_ae
    aelab train --config=configs/digits_ae.py:latent=2 --workdir=runs/digits_ae2
    aelab train --config=configs/digits_ae.py:arch=conv --workdir=runs/digits_conv

Trains in well under a minute on 2 CPU cores; summary.json puts its eval
recon_sse beside PCA's at the same latent size.
"""

import ml_collections

from aelab.config import base_config, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_arg(arg, latent=8, arch="mlp")
    config = base_config()
    config.data.name = "digits"
    config.loss = "bce"
    config.model.arch = args.arch
    config.model.latent_dim = args.latent
    config.model.hidden = (256, 128)
    config.model.channels = (32, 64)
    config.model.strides = (2, 2)
    config.train.num_steps = 3000
    config.train.batch_size = 64
    config.train.log_every = 100
    config.train.eval_every = 1000
    config.train.checkpoint_every = 1000
    return config

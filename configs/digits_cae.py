"""Contractive autoencoder on the bundled 8x8 digits: penalty on the exact Frobenius norm of the encoder Jacobian.

    aelab train --config=configs/digits_cae.py --workdir=runs/digits_cae
    aelab train --config=configs/digits_cae.py:weight=0.1 --workdir=runs/digits_cae2

The Jacobian is computed with reverse-mode autodiff (one pass per code unit),
so the cost grows with latent_dim.
"""

import ml_collections

from aelab.config import base_config, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_arg(arg, latent=8, weight=0.01)
    config = base_config()
    config.data.name = "digits"
    config.model.latent_dim = args.latent
    config.model.hidden = (256, 128)
    config.penalty.contractive = args.weight
    config.train.num_steps = 3000
    config.train.batch_size = 64
    config.train.eval_every = 1000
    config.train.checkpoint_every = 1000
    return config

"""Contractive autoencoder on MNIST: penalty on the exact Frobenius norm of the encoder Jacobian.

    aelab train --config=configs/mnist_cae.py --config.data.name=idx:../shared/data/mnist --workdir=runs/mnist_cae
    aelab train --config=configs/mnist_cae.py:weight=0.1 --config.data.name=idx:../shared/data/mnist --workdir=runs/mnist_cae2

The Jacobian is computed with reverse-mode autodiff (one pass per code unit),
so the cost grows with latent_dim.
"""

import ml_collections

from aelab.config import base_config, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_arg(arg, latent=30, weight=0.01)
    config = base_config()
    config.data.name = "mnist"
    config.model.latent_dim = args.latent
    config.model.hidden = (1000, 500, 250)
    config.penalty.contractive = args.weight
    config.train.num_steps = 20000
    config.train.batch_size = 256
    config.train.eval_every = 1000
    config.train.checkpoint_every = 1000
    return config

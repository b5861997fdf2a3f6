"""Sparse autoencoder on MNIST: sigmoid code with the KL-sparsity penalty (target rho) and an L1 term.

    aelab train --config=configs/mnist_sparse_ae.py --config.data.name=idx:../shared/data/mnist --workdir=runs/mnist_sparse
    aelab train --config=configs/mnist_sparse_ae.py:rho=0.02,kl=0.5,l1=0 --config.data.name=idx:../shared/data/mnist --workdir=runs/mnist_sparse2

Reports the mean code activation and the fraction of near-zero units.
"""

import ml_collections

from aelab.config import base_config, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_arg(arg, latent=120, rho=0.05, kl=0.1, l1=0.001)
    config = base_config()
    config.data.name = "mnist"
    config.model.latent_dim = args.latent  # overcomplete codes are where sparsity matters
    config.model.hidden = (1000, 500, 250)
    config.model.code_activation = "sigmoid"
    config.penalty.kl_sparsity = args.kl
    config.penalty.rho = args.rho
    config.penalty.l1 = args.l1
    config.train.num_steps = 20000
    config.train.batch_size = 256
    config.train.eval_every = 1000
    config.train.checkpoint_every = 1000
    return config

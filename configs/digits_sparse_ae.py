"""Sparse autoencoder on the bundled 8x8 digits: sigmoid code with the KL-sparsity penalty (target rho) and an L1 term.

    aelab train --config=configs/digits_sparse_ae.py --workdir=runs/digits_sparse
    aelab train --config=configs/digits_sparse_ae.py:rho=0.02,kl=0.5,l1=0 --workdir=runs/digits_sparse2

Reports the mean code activation and the fraction of near-zero units.
"""

import ml_collections

from aelab.config import base_config, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_arg(arg, latent=32, rho=0.05, kl=0.1, l1=0.001)
    config = base_config()
    config.data.name = "digits"
    config.model.latent_dim = args.latent  # overcomplete codes are where sparsity matters
    config.model.hidden = (256, 128)
    config.model.code_activation = "sigmoid"
    config.penalty.kl_sparsity = args.kl
    config.penalty.rho = args.rho
    config.penalty.l1 = args.l1
    config.train.num_steps = 3000
    config.train.batch_size = 64
    config.train.eval_every = 1000
    config.train.checkpoint_every = 1000
    return config

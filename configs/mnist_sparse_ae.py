"""Sparse autoencoder on MNIST: sigmoid code with the KL-sparsity penalty (target rho) and an L1 term.

    aelab train --config=configs/mnist_sparse_ae.py --config.data.name=idx:../shared/data/mnist --workdir=runs/mnist_sparse
    aelab train --config=configs/mnist_sparse_ae.py:rho=0.02,kl=0.5,l1=0 --config.data.name=idx:../shared/data/mnist --workdir=runs/mnist_sparse2

Overcomplete codes (4x the preset's latent size) are where sparsity matters.
Reports the mean code activation and the fraction of near-zero units.
"""

from aelab.config import parse_arg, preset


def get_config(arg=None):
    args = parse_arg(arg, latent=120, rho=0.05, kl=0.1, l1=0.001)
    config = preset("mnist")
    config.model.latent_dim = args.latent
    config.model.code_activation = "sigmoid"
    config.penalty.kl_sparsity = args.kl
    config.penalty.rho = args.rho
    config.penalty.l1 = args.l1
    return config

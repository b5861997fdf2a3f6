"""Contractive autoencoder on MNIST: penalty on the exact Frobenius norm of the encoder Jacobian.

    aelab train --config=configs/mnist_cae.py --config.data.name=idx:../shared/data/mnist --workdir=runs/mnist_cae
    aelab train --config=configs/mnist_cae.py:weight=0.1 --config.data.name=idx:../shared/data/mnist --workdir=runs/mnist_cae2

The Jacobian comes from reverse-mode autodiff (one pass per code unit), so
the cost grows with latent_dim.
"""

from aelab.config import parse_arg, preset


def get_config(arg=None):
    args = parse_arg(arg, latent=30, weight=0.01)
    config = preset("mnist")
    config.model.latent_dim = args.latent
    config.penalty.contractive = args.weight
    return config

"""Contractive autoencoder on the bundled 8x8 digits: penalty on the exact Frobenius norm of the encoder Jacobian.

    aelab train --config=configs/digits_cae.py --workdir=runs/digits_cae
    aelab train --config=configs/digits_cae.py:weight=0.1 --workdir=runs/digits_cae2

The Jacobian comes from reverse-mode autodiff (one pass per code unit), so
the cost grows with latent_dim.
"""

from aelab.config import parse_arg, preset


def get_config(arg=None):
    args = parse_arg(arg, latent=8, weight=0.01)
    config = preset("digits")
    config.model.latent_dim = args.latent
    config.penalty.contractive = args.weight
    return config

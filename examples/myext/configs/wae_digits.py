"""A Wasserstein autoencoder on the 8x8 digits: the MLP autoencoder plus myext's multi-scale
WAE-MMD penalty, which pulls the codes toward N(0, I) so that the run can sample.

    aelab train --config=configs/wae_digits.py --workdir=runs/wae
    aelab sample --workdir=runs/wae

`:weight=W,latent=D,steps=N` set the penalty's weight, the code size and the training length.
"""

from aelab.config import parse_arg, preset


def get_config(arg=None):
    args = parse_arg(arg, weight=10.0, latent=8, steps=3000)
    config = preset("digits", imports=("myext.wae",))
    config.model.latent_dim = args.latent
    config.penalty.mmd_multiscale = args.weight
    config.train.num_steps = args.steps
    return config

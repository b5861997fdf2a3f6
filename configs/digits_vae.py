"""VAE on the bundled 8x8 digits (Bernoulli likelihood on grey levels): seconds on a CPU.

    aelab train --config=configs/digits_vae.py --workdir=runs/digits_vae
    aelab train --config=configs/digits_vae.py:latent=2,beta=4 --workdir=runs/digits_bvae2
    aelab sample --workdir=runs/digits_vae
"""

from aelab.config import parse_arg, preset


def get_config(arg=None):
    args = parse_arg(arg, latent=8, beta=1.0)
    config = preset("digits")
    config.task = "vae"
    config.model.latent_dim = args.latent
    config.vae.beta = args.beta
    config.vae.kl_warmup_steps = 500
    return config

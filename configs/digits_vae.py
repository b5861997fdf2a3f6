"""VAE on the bundled 8x8 digits (Bernoulli likelihood on grey levels): seconds on a CPU.

    aelab train --config=configs/digits_vae.py --workdir=runs/digits_vae
    aelab train --config=configs/digits_vae.py:latent=2,beta=4 --workdir=runs/digits_bvae2
    aelab sample --workdir=runs/digits_vae
"""

import ml_collections

from aelab.config import base_config, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_arg(arg, latent=8, beta=1.0)
    config = base_config()
    config.task = "vae"
    config.data.name = "digits"
    config.loss = "bce"
    config.model.latent_dim = args.latent
    config.model.hidden = (256, 128)
    config.vae.beta = args.beta
    config.vae.kl_warmup_steps = 500
    config.vae.iw_samples = 1000
    config.train.num_steps = 3000
    config.train.batch_size = 64
    config.train.log_every = 100
    config.train.eval_every = 1000
    config.train.checkpoint_every = 1000
    return config

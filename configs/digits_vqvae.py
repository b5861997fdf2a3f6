"""VQ-VAE on the bundled 8x8 digits: the code is split into tokens, each snapped to the nearest of K codebook vectors.

    aelab train --config=configs/digits_vqvae.py --workdir=runs/digits_vqvae
    aelab train --config=configs/digits_vqvae.py:codes=128,dim=8 --workdir=runs/digits_vqvae2

Straight-through gradients, codebook and commitment losses (beta = vq.commitment);
reports codebook perplexity and dead codes.
"""

import ml_collections

from aelab.config import base_config, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_arg(arg, tokens=4, dim=4, codes=64)
    config = base_config()
    config.task = "vqvae"
    config.data.name = "digits"
    config.model.latent_dim = args.tokens * args.dim
    config.model.hidden = (256, 128)
    config.vq.embedding_dim = args.dim
    config.vq.codebook_size = args.codes
    config.train.num_steps = 3000
    config.train.batch_size = 64
    config.train.eval_every = 1000
    config.train.checkpoint_every = 1000
    return config

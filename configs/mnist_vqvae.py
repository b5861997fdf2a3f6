"""VQ-VAE on MNIST: the code is split into tokens, each snapped to the nearest of K codebook vectors.

    aelab train --config=configs/mnist_vqvae.py --config.data.name=idx:../shared/data/mnist --workdir=runs/mnist_vqvae
    aelab train --config=configs/mnist_vqvae.py:codes=128,dim=8 --config.data.name=idx:../shared/data/mnist --workdir=runs/mnist_vqvae2

Straight-through gradients, codebook and commitment losses (beta = vq.commitment);
reports codebook perplexity and dead codes.
"""

import ml_collections

from aelab.config import base_config, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_arg(arg, tokens=15, dim=4, codes=64)
    config = base_config()
    config.task = "vqvae"
    config.data.name = "mnist"
    config.model.latent_dim = args.tokens * args.dim
    config.model.hidden = (1000, 500, 250)
    config.vq.embedding_dim = args.dim
    config.vq.codebook_size = args.codes
    config.train.num_steps = 20000
    config.train.batch_size = 256
    config.train.eval_every = 1000
    config.train.checkpoint_every = 1000
    return config

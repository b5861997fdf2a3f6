"""VQ-VAE on the bundled 8x8 digits: the code is split into tokens, each snapped to the nearest of K codebook vectors.

    aelab train --config=configs/digits_vqvae.py --workdir=runs/digits_vqvae
    aelab train --config=configs/digits_vqvae.py:codes=128,dim=8 --workdir=runs/digits_vqvae2

Straight-through gradients, codebook and commitment losses (beta = vq.commitment);
reports codebook perplexity and dead codes.
"""

from aelab.config import parse_arg, preset


def get_config(arg=None):
    args = parse_arg(arg, tokens=4, dim=4, codes=64)
    config = preset("digits")
    config.task = "vqvae"
    config.model.latent_dim = args.tokens * args.dim
    config.vq.embedding_dim = args.dim
    config.vq.codebook_size = args.codes
    return config

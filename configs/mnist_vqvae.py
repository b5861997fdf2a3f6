"""VQ-VAE on MNIST: the code is split into tokens, each snapped to the nearest of K codebook vectors.

    aelab train --config=configs/mnist_vqvae.py --config.data.name=idx:../shared/data/mnist --workdir=runs/mnist_vqvae
    aelab train --config=configs/mnist_vqvae.py:codes=128,dim=8 --config.data.name=idx:../shared/data/mnist --workdir=runs/mnist_vqvae2
    aelab train --config=configs/mnist_vqvae.py:ema --config.data.name=idx:../shared/data/mnist --workdir=runs/mnist_vqvae_ema

Straight-through gradients, codebook and commitment losses (beta = vq.commitment);
reports codebook perplexity and dead codes. `:ema` keeps the codebook as moving averages
(decay 0.99) instead of the codebook loss, and restarts codes whose averaged use falls below
one assignment per step (Jukebox's rule). configs/mnist_vq_prior.py then learns a prior over
the codes, so the VQ-VAE can generate.
"""

from aelab.config import parse_arg, preset


def get_config(arg=None):
    args = parse_arg(arg, tokens=15, dim=4, codes=64, ema=False)
    config = preset("mnist")
    config.task = "vqvae"
    config.model.latent_dim = args.tokens * args.dim
    config.vq.embedding_dim = args.dim
    config.vq.codebook_size = args.codes
    if args.ema:
        config.vq.ema_decay = 0.99
        config.vq.restart_below = 1.0
    return config

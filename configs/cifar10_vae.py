"""Residual convolutional VAE on CIFAR-10 (32x32 colour), with a discretized logistic mixture
likelihood: bits per dimension beside nats.

    aelab train --config=configs/cifar10_vae.py --workdir=runs/cifar10_vae
    aelab train --config=configs/cifar10_vae.py:loss=mse,steps=2000 --workdir=runs/cifar10_gauss
    aelab sample --workdir=runs/cifar10_vae

Data: `images:../shared/data/cifar10` (the ImageFolder layout: 50,000 train and 10,000 test
JPEGs; validation carved from train). Model (`model.arch=resnet`): stages of 64, 128 and 256
channels, one residual block each (GroupNorm 8, SiLU), stride-2 convolutions down, nearest
x2 and a convolution up, a 128-d Gaussian posterior; `loss=dlogistic` with 5 logistics a
pixel (`:loss=mse` for a Gaussian, `:loss=bce` for the Bernoulli of the bench's W4). Adam
2e-4 with warm-up and cosine decay, batch 64, KL warm-up over 2,000 steps.
`:latent=N,steps=N,loss=L,width=W` change the code size, the length, the likelihood and the
first stage's width (the others double it).
"""

import ml_collections

from aelab.config import base_config, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_arg(arg, latent=128, steps=50000, loss="dlogistic", width=64)
    config = base_config("vae")
    config.data.name = "images:../shared/data/cifar10"
    config.loss = args.loss
    config.vae.iw_samples = 100
    config.vae.kl_warmup_steps = 2000
    config.model.arch = "resnet"
    config.model.resnet.channels = (args.width, 2 * args.width, 4 * args.width)
    config.model.resnet.blocks = 1
    config.model.resnet.upsample = "resize"
    config.model.mixtures = 5
    config.model.latent_dim = args.latent
    config.optimizer.learning_rate = 2e-4
    config.optimizer.schedule = "warmup_cosine"
    config.optimizer.warmup_steps = 1000
    config.train.num_steps = args.steps
    config.train.batch_size = 64
    config.train.eval_batch_size = 500
    config.train.log_every = 200
    config.train.eval_every = 5000
    config.train.checkpoint_every = 2500
    return config

"""Convolutional autoencoder on MNIST: two stride-2 3x3 convs (32, 64), a Dense code, mirrored decoder.

    aelab train --config=configs/mnist_conv_ae.py --config.data.name=idx:../shared/data/mnist --workdir=runs/mnist_conv
    aelab train --config=configs/mnist_conv_ae.py:latent=32,upsample=resize --config.data.name=mnist --workdir=runs/c

The architecture of the `conv_ae` benchmark workload (see ../shared/bench):
transposed convolutions in the decoder by default, or nearest-neighbour
upsampling + convolution with `upsample=resize`.
"""

import ml_collections

from aelab.config import base_config, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_arg(arg, latent=16, steps=6000, upsample="transpose")
    config = base_config()
    config.data.name = "mnist"
    config.loss = "bce"
    config.model.arch = "conv"
    config.model.latent_dim = args.latent
    config.model.conv.channels = (32, 64)
    config.model.conv.strides = (2, 2)
    config.model.conv.kernel_size = 3
    config.model.conv.upsample = args.upsample
    config.optimizer.schedule = "warmup_cosine"
    config.optimizer.warmup_steps = 200
    config.train.num_steps = args.steps
    config.train.batch_size = 128
    config.train.log_every = 200
    config.train.eval_every = 2000
    config.train.checkpoint_every = 2000
    return config

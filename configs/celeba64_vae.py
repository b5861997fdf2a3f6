"""Convolutional VAE on 64x64 colour faces: CelebA, the setting of the VAE chapter of Foster's
Generative Deep Learning (2nd ed., ch. 3), or any folder of colour images.

    aelab train --config=configs/celeba64_vae.py --workdir=runs/celeba_vae
    aelab train --config=configs/celeba64_vae.py --config.data.name=images:DIR --workdir=runs/faces_vae
    aelab sample --workdir=runs/celeba_vae

TFDS `celeb_a` (162,770 training, 19,867 validation and 19,962 test faces of
218x178; downloaded and prepared on first use, about 1.4 GB) or `images:DIR`:
each image is cut to its central square and resized to 64x64
(`data.image_size`). At 2.4 GB decoded the training split is larger than
`train.device_data_mb`, so the run streams it from disk (docs/data.md),
decoding in four worker processes (`train.input_processes`).
Encoder: four stride-2 3x3 convolutions (32, 64, 64, 128 channels) to a
128-d Gaussian posterior; the decoder mirrors it. Gaussian likelihood with a
fixed pixel sigma of 0.1 (`loss=mse`, `vae.sigma`), Adam 5e-4, batch 128.
`:latent=N,steps=N,sigma=S` change the code size, the length and sigma.
"""

import ml_collections

from aelab.config import base_config, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_arg(arg, latent=128, steps=25000, sigma=0.1)
    config = base_config("vae")
    config.data.name = "celeb_a"
    config.data.label_key = ""  # celeb_a has attributes, no class label
    config.data.image_size = 64
    config.loss = "mse"
    config.vae.sigma = args.sigma
    config.vae.iw_samples = 100
    config.model.arch = "conv"
    config.model.latent_dim = args.latent
    config.model.conv.channels = (32, 64, 64, 128)
    config.model.conv.strides = (2, 2, 2, 2)
    config.model.conv.kernel_size = 3
    config.optimizer.learning_rate = 5e-4
    config.optimizer.schedule = "warmup_cosine"
    config.optimizer.warmup_steps = 500
    config.train.num_steps = args.steps
    config.train.batch_size = 128
    config.train.eval_batch_size = 500
    config.train.log_every = 200
    config.train.eval_every = 5000
    config.train.checkpoint_every = 2500
    config.train.input_processes = 4  # JPEG/PNG decoding outruns threads, which share the GIL
    return config

"""Hierarchical VAE on dynamically binarized MNIST: two stochastic layers with top-down inference.

    aelab train --config=configs/mnist_hvae.py --config.data.name=idx:../shared/data/mnist --workdir=runs/mnist_hvae
    aelab train --config=configs/mnist_hvae.py:objective=iwae --config.data.name=mnist --workdir=runs/mnist_hiwae
    aelab sample --workdir=runs/mnist_hvae

The binarized-MNIST likelihood protocol of configs/mnist_vae.py (training images binarized
afresh every step, test once with a fixed seed; the IWAE bound at k = 1,000 in nats). Model
(aelab/models/hierarchical.py): an MLP 784-500-500 to 256 bottom-up features, stochastic
layers of 32 (bottom) and 16 (top) dimensions, each layer's prior and posterior from the
top-down features of the layer above, an MLP decoder 32-500-500-784. The stabilisers the
hierarchical VAEs need: KL warm-up over the first 10,000 steps (every layer), free bits of
0.05 nats per latent dimension, gradient clipping at norm 200. Adam 1e-3, warm-up and cosine
decay, batch 128. For scale: the IWAE paper's two-layer VAE 85.33 nats, its two-layer IWAE
(k = 50) 82.90. `:latents=32-16,steps=N,objective=elbo|iwae,temperature=T` change them.
"""

import ml_collections

from aelab.config import base_config, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_arg(arg, latents="32-16", steps=100000, objective="elbo", temperature=1.0)
    config = base_config()
    config.task = "vae"
    config.data.name = "mnist"
    config.loss = "bce"
    config.model.arch = "mlp"
    config.model.mlp.hidden = (500, 500)
    config.model.mlp.activation = "relu"
    config.vae.layer_activation = "relu"
    config.vae.latents = tuple(int(size) for size in str(args.latents).split("-"))
    config.vae.layer_width = 256
    config.vae.objective = args.objective
    config.vae.train_samples = 5
    config.vae.temperature = float(args.temperature)
    config.vae.binarize = True
    config.vae.kl_warmup_steps = 10000 if args.objective == "elbo" else 0
    config.vae.free_bits = 0.05 if args.objective == "elbo" else 0.0
    config.vae.iw_samples = 1000
    config.vae.iw_chunk = 100
    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 1e-3
    config.optimizer.schedule = "warmup_cosine"
    config.optimizer.warmup_steps = 1000
    config.optimizer.grad_clip_norm = 200.0
    config.train.num_steps = args.steps
    config.train.batch_size = 128
    config.train.log_every = 500
    config.train.eval_every = 10000
    config.train.checkpoint_every = 10000
    return config

"""VAE on dynamically binarized MNIST: 784-500-500-(20)-500-500-784, Bernoulli likelihood.

    aelab train --config=configs/mnist_vae.py --config.data.name=idx:../shared/data/mnist --workdir=runs/mnist_vae
    aelab train --config=configs/mnist_vae.py:beta=4 --config.data.name=mnist --workdir=runs/mnist_bvae
    aelab sample --workdir=runs/mnist_vae

The standard binarized-MNIST likelihood protocol: training images are
binarized afresh every step, the test set once with a fixed seed. summary.json
reports neg_elbo, recon, kl and the importance-sampled nll (k=1000), all in
nats per example. For scale: the IWAE paper's VAE reaches 86.76 nats after
3,280 epochs.
"""

import ml_collections

from aelab.config import base_config, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_arg(arg, latent=20, beta=1.0, steps=100000)
    config = base_config()
    config.task = "vae"
    config.data.name = "mnist"
    config.loss = "bce"
    config.model.arch = "mlp"
    config.model.latent_dim = args.latent
    config.model.mlp.hidden = (500, 500)
    config.model.mlp.activation = "relu"
    config.vae.beta = args.beta
    config.vae.binarize = True
    config.vae.iw_samples = 1000
    config.vae.iw_chunk = 100
    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 1e-3
    config.optimizer.schedule = "warmup_cosine"
    config.optimizer.warmup_steps = 1000
    config.train.num_steps = args.steps
    config.train.batch_size = 128
    config.train.log_every = 500
    config.train.eval_every = 10000
    config.train.checkpoint_every = 10000
    return config

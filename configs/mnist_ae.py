"""Hinton & Salakhutdinov (2006) deep autoencoder on MNIST: 784-1000-500-250-30, mirrored decoder.

    aelab train --config=configs/mnist_ae.py --config.data.name=idx:../shared/data/mnist --workdir=runs/mnist_ae
    aelab train --config=configs/mnist_ae.py:latent=2 --config.data.name=mnist --workdir=runs/mnist_ae2

Logistic output units trained with cross-entropy (bce) as in the paper, but
from random init with AdamW (decoupled weight decay 0.1, which closes most of
the train/test gap) and ReLU instead of RBM pretraining. The paper reports
test recon_sse 3.00 (sum of squared errors per image); PCA with 30 components
gives 13.87. summary.json puts our figure beside PCA's.
"""

import ml_collections

from aelab.config import base_config, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_arg(arg, latent=30, steps=20000)
    config = base_config()
    config.data.name = "mnist"
    config.loss = "bce"
    config.model.arch = "mlp"
    config.model.latent_dim = args.latent
    config.model.mlp.hidden = (1000, 500, 250)
    config.model.mlp.activation = "relu"
    config.optimizer.name = "adamw"
    config.optimizer.weight_decay = 0.1
    config.optimizer.learning_rate = 1e-3
    config.optimizer.schedule = "warmup_cosine"
    config.optimizer.warmup_steps = 500
    config.train.num_steps = args.steps
    config.train.batch_size = 256
    config.train.log_every = 200
    config.train.eval_every = 2000
    config.train.checkpoint_every = 2000
    return config

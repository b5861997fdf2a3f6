"""An autoregressive prior over a trained VQ-VAE's code tokens, so the VQ-VAE can generate.

    aelab train --config=configs/mnist_vqvae.py:ema --config.data.name=idx:../shared/data/mnist --workdir=runs/mnist_vqvae
    aelab train --config=configs/mnist_vq_prior.py:vqvae=runs/mnist_vqvae --workdir=runs/mnist_vq_prior
    aelab sample --workdir=runs/mnist_vq_prior

The VQ-VAE stays frozen: its newest checkpoint encodes each split into its 15 code tokens
once, and a small decoder-only Transformer (2 pre-norm layers, width 128, 4 heads)
learns p(c_t | c_<t) by cross-entropy. The prior takes the VQ-VAE's data keys (read from
its config.json), so its splits are the VQ-VAE's. Test NLL in nats per image, in bits per
code token and in bits per image dimension, beside codes drawn uniformly and each position's
training-code frequencies. Adam 1e-3, warm-up and cosine decay, batch 128, 10,000 steps.
`:vqvae=DIR,steps=N,temperature=T` change them.
"""

import json
import os

import ml_collections

from aelab.config import base_config, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_arg(arg, vqvae="runs/mnist_vqvae", steps=10000, temperature=1.0)
    config = base_config("vqprior")
    config.prior.vqvae = args.vqvae
    config.prior.temperature = float(args.temperature)
    saved = os.path.join(args.vqvae, "config.json")
    if os.path.exists(saved):  # the VQ-VAE's data, so the splits match (the task checks they do)
        with open(saved) as f:
            for key, value in json.load(f)["data"].items():
                if key in config.data:
                    config.data[key] = tuple(value) if isinstance(value, list) else value
    t = config.model.transformer
    t.embed_dim, t.num_layers, t.num_heads, t.mlp_dim, t.dropout = 128, 2, 4, 512, 0.1
    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 1e-3
    config.optimizer.schedule = "warmup_cosine"
    config.optimizer.warmup_steps = 500
    config.train.num_steps = args.steps
    config.train.batch_size = 128
    config.train.log_every = 200
    config.train.eval_every = 2000
    config.train.checkpoint_every = 2000
    return config

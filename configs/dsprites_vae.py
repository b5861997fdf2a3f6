"""VAE, beta-VAE and beta-TCVAE on generated shapes with known factors, for disentanglement.

    aelab train --config=configs/dsprites_vae.py --workdir=runs/dsprites_vae
    aelab train --config=configs/dsprites_vae.py:objective=tcvae,beta=6 --workdir=runs/dsprites_tcvae
    aelab disentangle --workdir=runs/dsprites_tcvae

Data: `dsprites:small` (aelab/data/factors.py): 46,080 32x32 images of a square, ellipse or
heart at every combination of 6 scales, 10 orientations and 16 x 16 positions, drawn on the
fly; `--config.data.name=dsprites` is the full 64x64 grid of 737,280 (then add a stride-2
layer). The model follows Higgins et al. (2017) at this size: four 4x4 convolutions
(32, 32, 64, 64 channels), three of stride 2, to a 10-d Gaussian posterior; Bernoulli
likelihood on the binary pixels; Adam 5e-4, batch 64.
`:objective=elbo|tcvae,beta=B,latent=N,steps=N,iw=K` choose the objective (beta weighs the KL
for elbo, the total correlation for tcvae), the code size, the length and the k of the final
importance-sampled NLL bound (iw=1 skips its cost where only the codes matter).
"""

import ml_collections

from aelab.config import base_config, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_arg(arg, objective="elbo", beta=1.0, latent=10, steps=6000, iw=100)
    config = base_config("vae")
    config.data.name = "dsprites:small"
    config.loss = "bce"
    config.vae.objective = args.objective
    config.vae.beta = float(args.beta)
    config.vae.iw_samples = args.iw
    config.model.arch = "conv"
    config.model.latent_dim = args.latent
    config.model.conv.channels = (32, 32, 64, 64)
    config.model.conv.strides = (2, 2, 2, 1)
    config.model.conv.kernel_size = 4
    config.optimizer.learning_rate = 5e-4
    config.train.num_steps = args.steps
    config.train.batch_size = 64
    config.train.eval_batch_size = 500
    config.train.log_every = 200
    config.train.eval_every = 2000
    config.train.checkpoint_every = 2000
    return config

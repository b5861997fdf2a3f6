"""The VQ-VAE task (van den Oord et al. 2017): reconstruction + codebook + commitment losses.

With `vq.ema_decay` > 0 the codebook follows moving averages of its assigned encoder outputs
instead of the codebook loss, and codes whose averaged use falls below
`vq.restart_below` restart at encoder outputs of the batch. Reports codebook usage:
`perplexity` (exp of the entropy of code usage over the split; K means every code is used
equally) and `dead_codes` (never used).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from flax import nnx

from aelab import losses, models
from aelab.errors import UsageError
from aelab.tasks import terms
from aelab.tasks.autoencoder import ReconstructionTask


class VQVAETask(ReconstructionTask):
    label = "VQ-VAE"

    def __init__(self, config: ml_collections.ConfigDict, policy=None, runs=None):
        super().__init__(config, policy, runs)
        q = config.vq
        if q.codebook_size < 2:
            raise UsageError(f"vq.codebook_size={q.codebook_size} must be >= 2")
        if q.embedding_dim < 1 or q.commitment < 0:
            raise UsageError(f"vq.embedding_dim={q.embedding_dim} must be >= 1 and "
                             f"vq.commitment={q.commitment} >= 0")
        if not 0 <= q.ema_decay < 1 or q.restart_below < 0:
            raise UsageError(f"vq.ema_decay={q.ema_decay} must lie in [0, 1) and vq.restart_below="
                             f"{q.restart_below} be >= 0")
        if q.restart_below and not q.ema_decay:
            raise UsageError("vq.restart_below restarts codes of a moving-average codebook; set vq.ema_decay "
                             "(e.g. 0.99) too")
        if q.ema_decay and config.train.compute_dtype != "float32":
            raise UsageError("vq.ema_decay updates the codebook inside the step, which "
                             f"train.compute_dtype={config.train.compute_dtype} runs on a cast copy; use float32")
        if config.model.latent_dim % q.embedding_dim:
            raise UsageError(f"model.latent_dim={config.model.latent_dim} must be a multiple of "
                             f"vq.embedding_dim={q.embedding_dim} (codes are split into tokens)")

    @classmethod
    def config_defaults(cls) -> dict:
        return {**super().config_defaults(), "vq": {
            "codebook_size": 64,
            "embedding_dim": 4,  # the code is split into latent_dim / embedding_dim tokens
            "commitment": 0.25,  # beta of the commitment loss
            "ema_decay": 0.0,  # > 0: the codebook is a moving average of its assigned outputs (0.99)
            "restart_below": 0.0,  # with ema_decay: codes used less than this (averaged count) restart
        }}

    def build_model(self, image_shape, rngs: nnx.Rngs) -> models.VQVAE:
        latent, q = self.config.model.latent_dim, self.config.vq
        encoder, decoder = self._encoder_decoder(image_shape, latent, rngs)
        quantizer = models.VectorQuantizer(q.codebook_size, q.embedding_dim, q.ema_decay, rngs=rngs)
        return models.VQVAE(encoder, decoder, self.loss.link, latent, quantizer)

    def forward(self, ctx: terms.Context) -> terms.Forward:
        x_in = self._corrupt(ctx.x, ctx.rng, ctx.training)
        z_e = ctx.model.encoder(x_in)
        z_q, q = ctx.model.quantizer.quantize(z_e)
        raw = ctx.model.decoder(z_q)
        return terms.Forward(x_in, z_q, raw, self.loss.per_example(raw, ctx.x), extras={"z_e": z_e, "q": q})

    def objective(self, ctx: terms.Context):
        f, v = ctx.forward, self.config.vq
        z_e, q = f.extras["z_e"], f.extras["q"]
        recon = f.recon.mean()
        commitment = jnp.sum(jnp.square(z_e - jax.lax.stop_gradient(q)), axis=-1).mean()
        if v.ema_decay:  # the codebook moves by averages, after this step's assignment
            ctx.model.quantizer.ema_update(z_e, ctx.key("codebook"), v.restart_below)
            loss = recon + v.commitment * commitment
        else:
            codebook = jnp.sum(jnp.square(jax.lax.stop_gradient(z_e) - q), axis=-1).mean()
            loss = recon + codebook + v.commitment * commitment
        return loss, {"recon": recon, "commitment": commitment,
                      "recon_sse": losses.sse(self.loss.link(f.raw), ctx.x).mean()}

    def evaluation(self, ctx: terms.Context, final: bool, penalties: list) -> dict:
        f = ctx.forward
        usage = jax.nn.one_hot(ctx.model.quantizer.indices(f.extras["z_e"]), self.config.vq.codebook_size).mean(axis=1)
        return {"loss": f.recon, **losses.recon_metrics(f.raw, ctx.x, self.loss), "code_usage": usage}

    def summarize(self, means: dict[str, np.ndarray]) -> dict[str, float]:
        usage = means.pop("code_usage")
        out = {k: float(v) for k, v in means.items()}
        used = usage[usage > 0]
        out["perplexity"] = float(np.exp(-np.sum(used * np.log(used))))
        out["dead_codes"] = float(np.sum(usage == 0))
        return out

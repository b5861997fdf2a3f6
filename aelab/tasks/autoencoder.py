"""The autoencoder task: reconstruct the (clean) input, beside PCA at the same size.

One task covers the plain, denoising (`config.corruption`), sparse
(`penalty.l1`, `penalty.kl_sparsity`) and contractive (`penalty.contractive`)
autoencoders: they differ only in the input they see and the penalty they pay.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from aelab import compiler, corruption, evaluate, losses, models, plots
from aelab.data import Dataset
from aelab.errors import UsageError

UNITS = {
    "loss": "training objective per example",
    "recon_sse": "sum of squared errors per example",
    "bce": "nats per example",
    "mse": "mean squared error per pixel",
    "l1": "sum of absolute errors per example",
    "psnr": "dB",
}
NEAR_ZERO = 0.01  # |code unit| below this counts as inactive (sparse AE report)


def kl_sparsity(rho: float, rho_hat: jax.Array) -> jax.Array:
    """sum_j KL(Bernoulli(rho) || Bernoulli(rho_hat_j)), Ng's sparse-autoencoder penalty."""
    rho_hat = jnp.clip(rho_hat, 1e-6, 1 - 1e-6)
    return jnp.sum(rho * jnp.log(rho / rho_hat) + (1 - rho) * jnp.log((1 - rho) / (1 - rho_hat)))


def jacobian_frobenius_sq(encode, x: jax.Array) -> jax.Array:
    """||d encode(x) / d x||_F^2 per example, exactly (reverse mode, one pass per code unit)."""
    def single(xi):
        jac = jax.jacrev(lambda v: encode(v[None])[0])(xi)
        return jnp.sum(jnp.square(jac))
    return jax.vmap(single)(x)


class AutoencoderTask:
    kind = "ae"

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        self.loss = losses.recon_loss(config.loss)
        models.check_autoencoder(config, self.kind)
        corruption.check(config.corruption.kind, config.corruption.level)
        p = config.penalty
        for key in ("l1", "kl_sparsity", "contractive"):
            if p[key] < 0:
                raise UsageError(f"penalty.{key}={p[key]} must be >= 0")
        if p.kl_sparsity and not 0 < p.rho < 1:
            raise UsageError(f"penalty.rho={p.rho} must lie strictly between 0 and 1")
        if p.kl_sparsity and config.model.code_activation != "sigmoid":
            raise UsageError("penalty.kl_sparsity needs codes in (0, 1): set model.code_activation=sigmoid")

    def prepare(self, dataset: Dataset) -> Dataset:
        return dataset

    def build_model(self, image_shape, rngs: nnx.Rngs) -> models.Autoencoder:
        return models.build_autoencoder(self.config, image_shape, rngs, kind=self.kind)

    def _corrupt(self, x, rng, training: bool):
        """The encoder's input: corrupted, except at evaluation when corruption.train_only is set."""
        c = self.config.corruption
        if not training and c.train_only:
            return x
        return corruption.corrupt(x, rng, c.kind, c.level)

    def _penalty(self, model, x_in, z):
        """(per-example penalty, batch-level sparsity term, the unweighted per-example terms)."""
        p = self.config.penalty
        terms = {}
        if p.l1:
            terms["code_l1"] = jnp.sum(jnp.abs(z), axis=-1)
        if p.contractive:
            terms["jacobian_frobenius_sq"] = jacobian_frobenius_sq(model.encode, x_in)
        per_example = (p.l1 * terms.get("code_l1", 0.0)
                       + p.contractive * terms.get("jacobian_frobenius_sq", 0.0))
        batch = p.kl_sparsity * kl_sparsity(p.rho, z.mean(axis=0)) if p.kl_sparsity else 0.0
        return per_example, batch, terms

    def loss_fn(self, model: models.Autoencoder, batch, rng: jax.Array, step):
        x = batch["image"]
        x_in = self._corrupt(x, rng, training=True)
        z = model.encode(x_in)
        raw = model.decoder(z)
        per_example, batch_penalty, _ = self._penalty(model, x_in, z)
        loss = (self.loss.per_example(raw, x) + per_example).mean() + batch_penalty
        return loss, {"loss": loss, "recon_sse": losses.sse(self.loss.link(raw), x).mean()}

    def eval_metrics(self, model: models.Autoencoder, batch, rng: jax.Array, final: bool):
        x = batch["image"]
        x_in = self._corrupt(x, rng, training=False)
        z = model.encode(x_in)
        raw = model.decoder(z)
        per_example, _, terms = self._penalty(model, x_in, z)
        metrics = {"loss": self.loss.per_example(raw, x) + per_example,
                   **losses.recon_metrics(raw, x, self.config.loss), **terms}
        if self.config.corruption.kind != "none" and not self.config.corruption.train_only:
            metrics["psnr_noisy"] = corruption.psnr(x_in, x)
            metrics["psnr"] = corruption.psnr(self.loss.link(raw), x)
        p = self.config.penalty
        if p.l1 or p.kl_sparsity:
            metrics["mean_activation"] = jnp.mean(jnp.abs(z), axis=-1)
            metrics["frac_near_zero"] = jnp.mean(jnp.abs(z) < NEAR_ZERO, axis=-1)
        return metrics

    def summarize(self, means: dict[str, np.ndarray]) -> dict[str, float]:
        return {k: float(v) for k, v in means.items()}

    def _pca(self, dataset: Dataset):
        """PCA at the latent size, fit once per training split (baselines and figures share it)."""
        if getattr(self, "_pca_fit_on", None) is not dataset.train:
            self._pca_fit_on = dataset.train
            self._fitted_pca = evaluate.fit_pca(dataset.train, self.config.model.latent_dim, self.config.seed)
        return self._fitted_pca

    def baselines(self, dataset: Dataset) -> dict[str, dict[str, float]]:
        return {"pca": evaluate.pca_baseline(self._pca(dataset), dataset.test)}

    def figures(self, model: models.Autoencoder, dataset: Dataset, records, figure_dir: str,
                baselines=None) -> None:
        images = dataset.test.images[:16]
        inputs = np.asarray(self._corrupt(images, jax.random.key(self.config.seed), training=False))
        reconstruction = np.asarray(compiler.jit_model(lambda m, x: m.reconstruct(x), model)(inputs))
        pca = evaluate.pca_reconstruction(self._pca(dataset), images)
        label = {"ae": "autoencoder", "vae": "VAE", "vqvae": "VQ-VAE"}[self.kind]
        rows, names = [images, reconstruction, pca], ["input", label, f"PCA-{self.config.model.latent_dim}"]
        if self.config.corruption.kind != "none" and not self.config.corruption.train_only:
            rows, names = [images, inputs, reconstruction], ["clean", "corrupted", "denoised"]
        plots.image_rows(rows, names, os.path.join(figure_dir, "reconstructions.png"),
                         title="test inputs and reconstructions")
        reference = {"PCA (test)": baselines["pca"]["recon_sse"]} if baselines else None
        plots.curves(records, "recon_sse", os.path.join(figure_dir, "recon_sse.png"),
                     f"recon_sse ({UNITS['recon_sse']})", reference)
        plots.curves(records, "loss", os.path.join(figure_dir, "loss.png"),
                     f"loss: {self.config.loss} ({UNITS['loss']})")
        plots.interpolation(model, dataset.test.images, os.path.join(figure_dir, "interpolation.png"))

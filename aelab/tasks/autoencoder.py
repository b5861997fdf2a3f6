"""The autoencoder task: reconstruct the (clean) input, beside PCA at the same size.

One task covers the plain, denoising (`config.corruption`), sparse
(`penalty.l1`, `penalty.kl_sparsity`) and contractive (`penalty.contractive`)
autoencoders: they differ only in the input they see and the penalty they pay.
`ReconstructionTask` is what it shares with the VAE and the VQ-VAE.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from aelab import corruption, losses, models, plots
from aelab.baselines import fit_pca, pca_baseline, pca_reconstruction
from aelab.data import Dataset, Split
from aelab.configtree import positive
from aelab.errors import UsageError, choose
from aelab.tasks.base import Task

UNITS = {
    "loss": "training objective per example",
    "recon_sse": "sum of squared errors per example",
    "bce": "nats per example",
    "mse": "mean squared error per pixel",
    "l1": "sum of absolute errors per example",
    "psnr": "dB",
}
NEAR_ZERO = 0.01  # |code unit| below this counts as inactive (sparse AE report)


def check_8_bit(split: Split, name: str, rows: int = 64) -> None:
    """Raises UsageError unless the first `rows` images hold 8-bit pixels (k / 255)."""
    images = np.asarray(split.images[:rows], np.float64) * 255.0
    off = np.abs(images - np.round(images))
    if off.max() > 1e-3:
        value = float(images.flat[int(np.argmax(off))] / 255.0)
        raise UsageError(f"loss=dlogistic models 8-bit pixels (multiples of 1/255), but {name} holds {value:.6g}; "
                         "use it on image data, or loss=mse / loss=bce")


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


class ReconstructionTask(Task):
    """What the image autoencoders share: an encoder and decoder of `config.model`, a
    reconstruction loss, denoising corruption, PCA at the same code size as the baseline, and
    the figures. Subclasses compose the model (`build_model`) and its losses."""

    label = "autoencoder"  # how figures name the model
    family = "autoencoder"

    def __init__(self, config: ml_collections.ConfigDict, policy=None, runs=None):
        super().__init__(config, policy, runs)
        m = config.model
        positive("model.mixtures", m.mixtures)
        self.loss = losses.recon_loss(config.loss, self.policy.softplus, m.mixtures)
        self._pca_fit_on, self._fitted_pca = None, None  # PCA of one training split, fit once
        positive("model.latent_dim", m.latent_dim)
        corruption.check(config.corruption.kind, config.corruption.level)
        if not 0.0 < config.anomaly.target_fpr < 1.0:
            raise UsageError(f"anomaly.target_fpr={config.anomaly.target_fpr} must lie strictly between 0 and 1")

    @classmethod
    def config_defaults(cls) -> dict:
        return {
            # reconstruction: bce (on logits) | mse | l1 | dlogistic (a discretized logistic mixture
            # over 8-bit pixels, model.mixtures components)
            "loss": "bce",
            # normal_classes: the one-class protocol, train/val keep only these labels; image_size:
            # images cut to their central square and resized to this size (0: as stored).
            "data": {"normal_classes": (), "image_size": 0},
            "model": {
                # mlp | conv | resnet (residual stages, GroupNorm, SiLU) | a plugin's; its own keys
                # are in config.model.<arch> (aelab/models/: mlp.py, conv.py, resnet.py)
                "arch": "mlp",
                "latent_dim": 16,
                "mixtures": 5,  # loss=dlogistic: logistic components per pixel
            },
            # Denoising: corrupt the input only, reconstruct the clean image.
            "corruption": {
                "kind": "none",  # none | gaussian | mask | salt_and_pepper
                "level": 0.0,  # gaussian: sigma; mask, salt_and_pepper: fraction of pixels
                "train_only": False,  # True: noise as a regularizer; evaluation sees clean inputs
            },
            # `aelab anomaly`: which per-example score flags anomalies, and the false-positive
            # rate on (normal) validation data that sets the threshold.
            "anomaly": {"score": "", "target_fpr": 0.05},  # score "" = neg_elbo (VAE) or the loss
        }

    def _encoder_decoder(self, image_shape, code_size: int, rngs: nnx.Rngs, latent_dim: int | None = None):
        """`model.arch`'s encoder (images -> `code_size` numbers) and decoder (`latent_dim`, by
        default model.latent_dim, numbers -> the loss's raw output for each image)."""
        image_shape = tuple(image_shape)
        spec = models.AutoencoderSpec(
            example_shape=image_shape, output_shape=(*image_shape[:-1], self.loss.out_channels(image_shape[-1])),
            code_size=code_size, latent_dim=latent_dim or self.config.model.latent_dim, rngs=rngs,
            subpixel=self.policy.subpixel_upsampling)
        return models.build(self.family, self.config.model, spec)

    @property
    def code_size(self) -> int:
        """The numbers in an image's code (`encode`): what PCA, the baseline, gets as many of."""
        return self.config.model.latent_dim

    def prepare(self, dataset: Dataset) -> Dataset:
        """loss=dlogistic models 8-bit pixels: refuses data whose values are not multiples of 1/255."""
        if self.config.loss == "dlogistic":
            check_8_bit(dataset.train, dataset.name)
        return dataset

    def _corrupt(self, x, rng, training: bool):
        """The encoder's input: corrupted, except at evaluation when corruption.train_only is set."""
        c = self.config.corruption
        if not training and c.train_only:
            return x
        return corruption.corrupt(x, rng, c.kind, c.level)

    def _pca(self, dataset: Dataset):
        """PCA at the latent size, fit once per training split (baselines and figures share it)."""
        if self._pca_fit_on is not dataset.train:
            self._pca_fit_on = dataset.train
            self._fitted_pca = fit_pca(dataset.train, self.code_size, self.config.seed)
        return self._fitted_pca

    def baselines(self, dataset: Dataset) -> dict[str, dict[str, float]]:
        return {"pca": pca_baseline(self._pca(dataset), dataset.test)}

    def figures(self, model: models.Autoencoder, dataset: Dataset, records, figure_dir: str,
                baselines=None) -> None:
        images = np.asarray(dataset.test.images[dataset.test.figure_rows(16, self.config.seed)])
        inputs = np.asarray(self._corrupt(images, jax.random.key(self.config.seed), training=False))
        reconstruction = np.asarray(self.policy.jit_model(lambda m, x: m.reconstruct(x), model)(inputs))
        pca = pca_reconstruction(self._pca(dataset), images)
        rows, names = [images, reconstruction, pca], ["input", self.label, f"PCA-{self.code_size}"]
        if self.config.corruption.kind != "none" and not self.config.corruption.train_only:
            rows, names = [images, inputs, reconstruction], ["clean", "corrupted", "denoised"]
        plots.image_rows(rows, names, os.path.join(figure_dir, "reconstructions.png"),
                         title="test inputs and reconstructions")
        reference = {"PCA (test)": baselines["pca"]["recon_sse"]} if baselines else None
        plots.curves(records, "recon_sse", os.path.join(figure_dir, "recon_sse.png"),
                     f"recon_sse ({UNITS['recon_sse']})", reference)
        plots.curves(records, "loss", os.path.join(figure_dir, "loss.png"),
                     f"loss: {self.config.loss} ({UNITS['loss']})")
        plots.interpolation(model, images, os.path.join(figure_dir, "interpolation.png"), self.policy)


class AutoencoderTask(ReconstructionTask):
    """The plain, denoising, sparse and contractive autoencoders."""

    def __init__(self, config: ml_collections.ConfigDict, policy=None, runs=None):
        super().__init__(config, policy, runs)
        choose("model.code_activation", config.model.code_activation, models.CODE_ACTIVATIONS)
        p = config.penalty
        for key in ("l1", "kl_sparsity", "contractive"):
            if p[key] < 0:
                raise UsageError(f"penalty.{key}={p[key]} must be >= 0")
        if p.kl_sparsity and not 0 < p.rho < 1:
            raise UsageError(f"penalty.rho={p.rho} must lie strictly between 0 and 1")
        if p.kl_sparsity and config.model.code_activation != "sigmoid":
            raise UsageError("penalty.kl_sparsity needs codes in (0, 1): set model.code_activation=sigmoid")

    @classmethod
    def config_defaults(cls) -> dict:
        defaults = super().config_defaults()
        defaults["model"]["code_activation"] = "none"  # none | sigmoid | relu
        defaults["penalty"] = {  # weights; 0 = off
            "l1": 0.0,  # sparse AE: l1 * sum|z| per example
            "kl_sparsity": 0.0,  # sparse AE: weight of sum_j KL(rho || mean activation_j)
            "rho": 0.05,  # target mean activation (needs model.code_activation=sigmoid)
            "contractive": 0.0,  # contractive AE: weight of ||d code / d x||_F^2
        }
        return defaults

    def build_model(self, image_shape, rngs: nnx.Rngs) -> models.Autoencoder:
        m = self.config.model
        encoder, decoder = self._encoder_decoder(image_shape, m.latent_dim, rngs)
        return models.Autoencoder(encoder, decoder, self.loss.link, m.latent_dim, m.code_activation)

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
                   **losses.recon_metrics(raw, x, self.loss), **terms}
        if self.config.corruption.kind != "none" and not self.config.corruption.train_only:
            metrics["psnr_noisy"] = losses.psnr(x_in, x)
        p = self.config.penalty
        if p.l1 or p.kl_sparsity:
            metrics["mean_activation"] = jnp.mean(jnp.abs(z), axis=-1)
            metrics["frac_near_zero"] = jnp.mean(jnp.abs(z) < NEAR_ZERO, axis=-1)
        return metrics

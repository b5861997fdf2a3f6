"""The autoencoder task: reconstruct the (clean) input, beside PCA at the same size.

One task covers the plain, denoising (`config.corruption`), sparse
(`penalty.l1`, `penalty.kl_sparsity`), contractive (`penalty.contractive`) and
Wasserstein (`penalty.mmd`) autoencoders: they differ only in the input they see
and the penalty they pay. `ReconstructionTask` is what it shares with the VAE and
the VQ-VAE: one forward pass a step, an objective over it, and the registered
penalties and metrics (aelab.tasks.terms).
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
from aelab.registry import PENALTIES
from aelab.tasks import terms
from aelab.tasks.base import Task

UNITS = {
    "loss": "training objective per example",
    "recon_sse": "sum of squared errors per example",
    "bce": "nats per example",
    "mse": "mean squared error per pixel",
    "l1": "sum of absolute errors per example",
    "psnr": "dB",
}


def check_8_bit(split: Split, name: str, rows: int = 64) -> None:
    """Raises UsageError unless the first `rows` images hold 8-bit pixels (k / 255)."""
    images = np.asarray(split.images[:rows], np.float64) * 255.0
    off = np.abs(images - np.round(images))
    if off.max() > 1e-3:
        value = float(images.flat[int(np.argmax(off))] / 255.0)
        raise UsageError(f"loss=dlogistic models 8-bit pixels (multiples of 1/255), but {name} holds {value:.6g}; "
                         "use it on image data, or loss=mse / loss=bce")


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
        terms.check_penalties(config)
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
            # Penalties added to the loss, each weighted by penalty.<name> (0 = off), and their own
            # keys: l1 (sum |z| per example: sparse), kl_sparsity with rho (KL of the mean activation
            # to rho: sparse, needs model.code_activation=sigmoid), contractive (||d code / d x||_F^2),
            # mmd (MMD of the codes to N(0, I): a Wasserstein autoencoder) and those plugins register.
            "penalty": {key: value for entry in PENALTIES.entries("autoencoder")
                        for key, value in entry.config.items()},
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
            check_8_bit(dataset.first, dataset.name)
        return dataset

    def _corrupt(self, x, rng, training: bool):
        """The encoder's input: corrupted, except at evaluation when corruption.train_only is set."""
        c = self.config.corruption
        if not training and c.train_only:
            return x
        return corruption.corrupt(x, rng, c.kind, c.level)

    # --- one forward pass, an objective over it, the registered penalties and metrics --------------
    def context(self, model, batch, rng: jax.Array, step, mask=None) -> terms.Context:
        """The batch as objectives, penalties and metrics see it (`step` None: evaluation)."""
        return terms.Context(self, model, batch["image"], rng, step, mask)

    def forward(self, ctx: terms.Context) -> terms.Forward:
        """The model's forward pass over the batch: what every term reads."""
        raise NotImplementedError

    def objective(self, ctx: terms.Context) -> tuple[jax.Array, dict]:
        """(the training objective: per example (B,), or a batch's scalar; training metrics)."""
        raise NotImplementedError

    def evaluation(self, ctx: terms.Context, final: bool, penalties: list) -> dict:
        """The task's own per-example metrics (`penalties`: the active ones, with their values)."""
        raise NotImplementedError

    def loss_fn(self, model, batch, rng: jax.Array, step):
        ctx = self.context(model, batch, rng, step)
        objective, metrics = self.objective(ctx)
        loss = terms.with_penalties(objective, terms.penalty_values(ctx))
        return loss, {"loss": loss, **metrics}

    def eval_metrics(self, model, batch, rng: jax.Array, final: bool):
        ctx = self.context(model, batch, rng, None, batch["mask"])
        penalties = terms.penalty_values(ctx)
        return {**self.evaluation(ctx, final, penalties), **terms.penalty_metrics(penalties),
                **terms.registered_metrics(ctx, final)}

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
    """The plain, denoising, sparse, contractive and Wasserstein autoencoders."""

    def __init__(self, config: ml_collections.ConfigDict, policy=None, runs=None):
        super().__init__(config, policy, runs)
        choose("model.code_activation", config.model.code_activation, models.CODE_ACTIVATIONS)

    @classmethod
    def config_defaults(cls) -> dict:
        defaults = super().config_defaults()
        defaults["model"]["code_activation"] = "none"  # none | sigmoid | relu
        return defaults

    def build_model(self, image_shape, rngs: nnx.Rngs) -> models.Autoencoder:
        m = self.config.model
        encoder, decoder = self._encoder_decoder(image_shape, m.latent_dim, rngs)
        priors = [p.options["prior"] for p in terms.active_penalties(self.config) if p.options["prior"]]
        return models.Autoencoder(encoder, decoder, self.loss.link, m.latent_dim, m.code_activation,
                                  prior=priors[0] if priors else None)

    def forward(self, ctx: terms.Context) -> terms.Forward:
        x_in = self._corrupt(ctx.x, ctx.rng, training=ctx.training)
        code = ctx.model.encode(x_in)
        raw = ctx.model.decoder(code)
        return terms.Forward(x_in, code, raw, self.loss.per_example(raw, ctx.x))

    def objective(self, ctx: terms.Context):
        f = ctx.forward
        return f.recon, {"recon_sse": losses.sse(self.loss.link(f.raw), ctx.x).mean()}

    def evaluation(self, ctx: terms.Context, final: bool, penalties: list) -> dict:
        f, x = ctx.forward, ctx.x
        per_example = [weight * value for _, weight, value in penalties if jnp.ndim(value) > 0]
        metrics = {"loss": sum(per_example, f.recon), **losses.recon_metrics(f.raw, x, self.loss)}
        if self.config.corruption.kind != "none" and not self.config.corruption.train_only:
            metrics["psnr_noisy"] = losses.psnr(f.x_in, x)
        return metrics

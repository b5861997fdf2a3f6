"""The autoencoder task: reconstruct the input; recon_sse beside PCA at the same size."""

from __future__ import annotations

import os

import jax
import ml_collections
import numpy as np
from flax import nnx

from aelab import evaluate, losses, models, plots
from aelab.data import Dataset

UNITS = {
    "loss": "training objective per example",
    "recon_sse": "sum of squared errors per example",
    "bce": "nats per example",
    "mse": "mean squared error per pixel",
    "l1": "sum of absolute errors per example",
}


class AutoencoderTask:
    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        self.loss = losses.recon_loss(config.loss)

    def build_model(self, image_shape, rngs: nnx.Rngs) -> models.Autoencoder:
        return models.build_autoencoder(self.config, image_shape, rngs)

    def loss_fn(self, model: models.Autoencoder, batch, rng: jax.Array):
        x = batch["image"]
        raw = model(x)
        loss = self.loss.per_example(raw, x).mean()
        return loss, {"loss": loss, "recon_sse": losses.sse(self.loss.link(raw), x).mean()}

    def eval_metrics(self, model: models.Autoencoder, batch, rng: jax.Array):
        x = batch["image"]
        raw = model(x)
        return {"loss": self.loss.per_example(raw, x), **losses.recon_metrics(raw, x, self.config.loss)}

    def baselines(self, dataset: Dataset) -> dict[str, dict[str, float]]:
        return {"pca": evaluate.pca_baseline(dataset.train, dataset.test,
                                             self.config.model.latent_dim, self.config.seed)}

    def figures(self, model: models.Autoencoder, dataset: Dataset, records, figure_dir: str,
                baselines=None) -> None:
        images = dataset.test.images[:16]
        reconstruction = np.asarray(model.reconstruct(images))
        pca = evaluate.pca_reconstruction(dataset.train, dataset.test.take(np.arange(16)),
                                          self.config.model.latent_dim, self.config.seed)
        plots.image_rows([images, reconstruction, pca],
                         ["input", "autoencoder", f"PCA-{self.config.model.latent_dim}"],
                         os.path.join(figure_dir, "reconstructions.png"),
                         title="test inputs and reconstructions")
        reference = {"PCA (test)": baselines["pca"]["recon_sse"]} if baselines else None
        plots.curves(records, "recon_sse", os.path.join(figure_dir, "recon_sse.png"),
                     f"recon_sse ({UNITS['recon_sse']})", reference)
        plots.curves(records, "loss", os.path.join(figure_dir, "loss.png"),
                     f"loss: {self.config.loss} ({UNITS['loss']})")

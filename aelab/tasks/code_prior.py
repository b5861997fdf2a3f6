"""The code-prior task: an autoregressive Transformer over a frozen VQ-VAE's code tokens, so a
VQ-VAE becomes a generative model (van den Oord et al. 2017, section 3.2).

`prior.vqvae` names the trained VQ-VAE run. Its newest checkpoint encodes every
split of its own data (the prior's `data` keys must equal the VQ-VAE's) into
token sequences once, before training; the VQ-VAE is never trained here. The
step of that checkpoint is saved as the prior's asset `vqvae.json`, and a prior
refuses a VQ-VAE that has moved on since. Units: `loss` is nats per code
token, `nll` nats per image, `bits_per_dim` the same bits spread
over the image's dimensions (pixels x channels), `bits_per_token` bits per token.
"""

from __future__ import annotations

import json
import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from aelab import models, plots
from aelab import workdir as wd
from aelab.data import Dataset, Split, eval_batches
from aelab.errors import UsageError, choose
from aelab.models.prior import CodePrior
from aelab.tasks.base import Task

VQVAE_ASSET = "vqvae.json"
UNITS = {"loss": "nats per code token", "nll": "nats per image", "bits_per_dim": "bits per image dimension",
         "bits_per_token": "bits per code token", "token_accuracy": "fraction of tokens"}
# Data keys that decide what the splits hold: the prior's must equal its VQ-VAE's.
SPLIT_KEYS = ("name", "data_dir", "val_fraction", "test_fraction", "split_seed", "split_by", "image_size",
              "normal_classes")


class CodePriorTask(Task):
    label = "code prior"
    family = "code_prior"

    def __init__(self, config: ml_collections.ConfigDict, policy=None, runs=None):
        super().__init__(config, policy, runs)
        choose("loss", config.loss, ("cross_entropy",))
        if config.prior.temperature <= 0:
            raise UsageError(f"prior.temperature={config.prior.temperature} must be > 0")
        if not config.prior.vqvae:
            raise UsageError("task=vqprior needs prior.vqvae: the workdir of a trained VQ-VAE (task=vqvae)")
        if runs is None:
            raise UsageError("task=vqprior reads its VQ-VAE run: build it with a run loader (aelab.restore.RUNS)")
        self.vqvae_config = runs.config(config.prior.vqvae, "vqvae", "a code prior")
        differ = [k for k in SPLIT_KEYS if _value(config.data, k) != _value(self.vqvae_config.data, k)]
        if differ:
            raise UsageError(f"prior.vqvae={config.prior.vqvae} trained on other data: "
                             + ", ".join(f"data.{k}={self.vqvae_config.data.get(k)!r}" for k in differ)
                             + "; give its prior the same data")
        self.vqvae_step: int | None = None  # the checkpoint whose codes the prior models
        self._frozen = None
        q = self.vqvae_config.vq
        self.codebook_size = q.codebook_size
        self.length = self.vqvae_config.model.latent_dim // q.embedding_dim

    @classmethod
    def config_defaults(cls) -> dict:
        return {
            "loss": "cross_entropy",
            "data": {"normal_classes": (), "image_size": 0},  # as the VQ-VAE's (its images, its splits)
            # A decoder-only Transformer over the code tokens (its keys in config.model.transformer).
            "model": {"arch": "transformer"},
            "prior": {
                "vqvae": "",  # the workdir of the trained VQ-VAE whose codes the prior models
                "temperature": 1.0,  # sampling: logits are divided by it (< 1: safer, less varied)
            },
        }

    # --- the frozen VQ-VAE -------------------------------------------------------------------------
    def load_assets(self, workdir: str) -> None:
        path = os.path.join(workdir, VQVAE_ASSET)
        if os.path.lexists(path):
            step = wd.read_record(workdir, VQVAE_ASSET).get("step")
            if not isinstance(step, int):
                raise UsageError(f"{wd.shown(path)} is damaged: step={step!r}, not a checkpoint step")
            self.vqvae_step = step

    def save_assets(self, workdir: str) -> None:
        path = os.path.join(workdir, VQVAE_ASSET)
        if not os.path.exists(path):
            record = {"workdir": os.path.abspath(self.config.prior.vqvae), "step": self.vqvae_step}
            wd.atomic_write(path, json.dumps(record, indent=2).encode())

    def vqvae(self):
        """The frozen VQ-VAE (aelab.restore.Trained), loaded read-only on first use."""
        if self._frozen is None:
            frozen = self.runs.load(self.config.prior.vqvae, "vqvae", "a code prior")
            if self.vqvae_step is not None and frozen.step != self.vqvae_step:
                raise UsageError(f"prior.vqvae={self.config.prior.vqvae} is now at step {frozen.step}, but this "
                                 f"prior models the codes of its step {self.vqvae_step}; train a new prior")
            self.vqvae_step, self._frozen = frozen.step, frozen
        return self._frozen

    def prepare(self, dataset: Dataset) -> Dataset:
        """Every split as the VQ-VAE's code tokens (N, T), with its labels."""
        frozen = self.vqvae()
        dataset = frozen.task.prepare(dataset)

        def tokens(split: Split | None) -> Split | None:
            if split is None:  # loaded for another split only
                return None
            codes = [frozen.code_tokens(batch["image"])[batch["mask"] > 0] for batch in eval_batches(
                {"image": split.images}, 500)]
            return Split(np.concatenate(codes).astype(np.int32), split.labels)

        info = {**dataset.info, "vqvae_step": frozen.step, "code_tokens": self.length,
                "codebook_size": self.codebook_size, "image_dims": self._image_dims()}
        return Dataset(dataset.name, tokens(dataset.train), tokens(dataset.val), tokens(dataset.test), info)

    def build_model(self, example_shape, rngs: nnx.Rngs) -> CodePrior:
        return models.build(self.family, self.config.model, models.CodePriorSpec(self.codebook_size, self.length,
                                                                                   rngs))

    # --- math ---------------------------------------------------------------------------------------
    def loss_fn(self, model, batch, rng: jax.Array, step):
        codes = batch["image"]
        nll = optax.softmax_cross_entropy_with_integer_labels(model(codes, rng), codes)
        loss = nll.mean()
        return loss, {"loss": loss}

    def eval_metrics(self, model, batch, rng: jax.Array, final: bool):
        codes = batch["image"]
        logits = model(codes)
        nll = optax.softmax_cross_entropy_with_integer_labels(logits, codes)
        return {"loss": nll.mean(-1), "nll": nll.sum(-1),
                "token_accuracy": (jnp.argmax(logits, -1) == codes).mean(-1)}

    def summarize(self, means: dict[str, np.ndarray]) -> dict[str, float]:
        out = {k: float(v) for k, v in means.items()}
        out["bits_per_token"] = out["loss"] / math.log(2)
        out["bits_per_dim"] = out["nll"] / (math.log(2) * self._image_dims())
        return out

    def _image_dims(self) -> int:
        """Pixels x channels of the VQ-VAE's images, over which bits_per_dim spreads an image's bits."""
        return int(np.prod(self.vqvae().example_shape))

    def baselines(self, dataset: Dataset) -> dict[str, dict[str, float]]:
        """Test bits under codes drawn uniformly, and under each position's code frequencies in
        train (add-one smoothed): what modelling the dependence between codes must beat."""
        k, t, dims = self.codebook_size, self.length, self._image_dims()
        counts = np.stack([np.bincount(dataset.train.images[:, i], minlength=k) for i in range(t)]) + 1.0
        log_p = np.log(counts / counts.sum(1, keepdims=True))
        test = np.asarray(dataset.test.images)
        nll = -log_p[np.arange(t), test].sum(1).mean()
        return {"uniform": {"bits_per_token": math.log2(k), "bits_per_dim": t * math.log2(k) / dims},
                "position_frequencies": {"bits_per_token": nll / t / math.log(2),
                                         "bits_per_dim": nll / math.log(2) / dims}}

    # --- generation ---------------------------------------------------------------------------------
    def sample_codes(self, model: CodePrior, num_samples: int, seed: int) -> np.ndarray:
        temperature = self.config.prior.temperature
        draw = self.policy.jit_model(lambda m, key: m.sample(num_samples, key, temperature), model, "evaluate")
        return np.asarray(draw(jax.random.key(seed)))

    def sample_images(self, model: CodePrior, num_samples: int, seed: int) -> np.ndarray:
        """Images drawn from the prior: codes sampled token by token, decoded by the frozen VQ-VAE."""
        return self.vqvae().decode_tokens(self.sample_codes(model, num_samples, seed))

    def figures(self, model, dataset: Dataset, records, figure_dir: str, baselines=None) -> None:
        plots.sample_grid(self.sample_images(model, 64, self.config.seed), os.path.join(figure_dir, "samples.png"),
                          title=f"64 samples: code prior (T={self.config.prior.temperature}) + VQ-VAE decoder")
        reference = {"position frequencies (test)": baselines["position_frequencies"]["bits_per_token"]
                     * math.log(2)} if baselines else None
        plots.curves(records, "loss", os.path.join(figure_dir, "loss.png"), f"loss ({UNITS['loss']})", reference)


def _value(data: ml_collections.ConfigDict, key: str):
    value = data.get(key)
    return tuple(value) if isinstance(value, (list, tuple)) else value

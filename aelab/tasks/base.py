"""The task contract: what the trainer, and the commands that use a run, ask of a task.

A task owns its math (model, loss, metrics, baselines, figures) and the config
keys it reads. The trainer calls only these methods; the defaults do nothing,
so a task overrides what it has and the trainer never asks what a task is.
"""

from __future__ import annotations

from typing import Any, Protocol

import jax
import ml_collections
import numpy as np
from flax import nnx

from aelab.compiler import CompilePolicy
from aelab.data import Dataset
from aelab.registry import METRICS


class RunLoader(Protocol):
    """How a task reaches another trained run (a code prior, its VQ-VAE), read-only: given to the
    task by whoever builds it (aelab.restore.RUNS), so that tasks sit below the code that loads runs."""

    def config(self, workdir: str, task: str | None, use: str) -> ml_collections.ConfigDict:
        """The run's resolved config, checked to be of `task` (naming `use` where it is not)."""

    def load(self, workdir: str, task: str | None, use: str) -> Any:
        """The run's model (aelab.restore.Trained), from its newest checkpoint."""


class Task:
    """One kind of encoder-decoder problem. Subclasses implement `build_model`, `loss_fn` and
    `eval_metrics`; everything else has a default that does nothing."""

    # Training batches cut to these lengths (text); () = one shape.
    bucket_lengths: tuple[int, ...] = ()
    # The family of architectures `model.arch` picks from (aelab.models.architectures), or None
    # for a task that builds its model itself.
    family: str | None = None

    def __init__(self, config: ml_collections.ConfigDict, policy: CompilePolicy | None = None,
                 runs: RunLoader | None = None):
        self.config = config
        self.policy = policy or CompilePolicy.for_config(config)
        self.runs = runs

    @classmethod
    def config_defaults(cls) -> dict[str, Any]:
        """The config keys this task reads beyond the common ones (`aelab.config.common_config`),
        with their defaults, as a nested dict: what `config.json` holds besides the common keys."""
        return {}

    # --- assets: files a run keeps beside its checkpoints (a tokenizer) -------------------------
    def load_assets(self, workdir: str) -> None:
        """Reads the assets a run saved in `workdir`, so they are not rebuilt from the data."""

    def save_assets(self, workdir: str) -> None:
        """Writes the assets the trained model needs into `workdir`."""

    # --- data and model --------------------------------------------------------------------------
    def prepare(self, dataset: Dataset) -> Dataset:
        """The data set as the model reads it (tokenized, binarized, checked)."""
        return dataset

    def build_model(self, example_shape: tuple[int, ...], rngs: nnx.Rngs) -> nnx.Module:
        raise NotImplementedError

    # --- math, traced under jit ------------------------------------------------------------------
    def loss_fn(self, model: nnx.Module, batch: dict, rng: jax.Array, step) -> tuple[jax.Array, dict]:
        """(scalar loss, {name: scalar metric}) of a training batch."""
        raise NotImplementedError

    def eval_metrics(self, model: nnx.Module, batch: dict, rng: jax.Array, final: bool) -> dict:
        """{name: per-example values}; `final` adds the expensive metrics of the last evaluation."""
        raise NotImplementedError

    # --- reports ----------------------------------------------------------------------------------
    def summarize(self, means: dict[str, np.ndarray]) -> dict[str, float]:
        """The split's metrics from the means of `eval_metrics` over its examples."""
        return {k: float(v) for k, v in means.items()}

    def generation_metrics(self, model: nnx.Module, split, final: bool, samples_path: str | None) -> dict:
        """Split-level metrics: those of decoded outputs (BLEU, written as samples to `samples_path`
        when given) and the registered split-level metrics of the task's family
        (`fn(task, model, split) -> float`)."""
        return {entry.name: float(entry.target(self, model, split))
                for entry in METRICS.entries(self.family)
                if entry.options["level"] == "split" and (final or not entry.options["final"])}

    def baselines(self, dataset: Dataset) -> dict[str, dict[str, float]]:
        """{baseline: {metric: value}} on the test split, in the task's units."""
        return {}

    def figures(self, model: nnx.Module, dataset: Dataset, records: list[dict], figure_dir: str,
                baselines: dict | None = None) -> None:
        """Writes the run's figures into `figure_dir`."""

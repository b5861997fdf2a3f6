"""Task registry. A task owns its math: model, loss, metrics, baselines and figures.

The trainer only calls these methods:
    build_model(image_shape, rngs) -> nnx.Module
    loss_fn(model, batch, rng) -> (scalar loss, {name: scalar})     # traced under jit
    eval_metrics(model, batch, rng) -> {name: per-example values}   # traced under jit
    baselines(dataset) -> {baseline: {metric: value}}
    figures(model, dataset, records, figure_dir) -> None
"""

from __future__ import annotations

import ml_collections

from aelab.errors import choose
from aelab.tasks.autoencoder import AutoencoderTask

TASKS = {"autoencoder": AutoencoderTask}


def get_task(config: ml_collections.ConfigDict):
    choose("task", config.task, TASKS)
    return TASKS[config.task](config)

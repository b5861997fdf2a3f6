"""Task registry. A task owns its math: model, loss, metrics, baselines and figures.

The trainer only calls these methods:
    prepare(dataset) -> dataset                                        # e.g. fixed binarization
    build_model(image_shape, rngs) -> nnx.Module
    loss_fn(model, batch, rng, step) -> (scalar loss, {name: scalar})    # traced under jit
    eval_metrics(model, batch, rng, final) -> {name: per-example values} # traced under jit
    summarize({name: mean over the split}) -> {name: float}
    baselines(dataset) -> {baseline: {metric: value}}
    figures(model, dataset, records, figure_dir, baselines) -> None
and, where a task has them:
    load_assets(workdir) / save_assets(workdir)                        # e.g. a tokenizer
    bucket_lengths                                                     # text: batch lengths
    generation_metrics(model, split, final, samples_path) -> {name: float}  # decoded outputs
"""

from __future__ import annotations

import ml_collections

from aelab.errors import choose
from aelab.tasks.autoencoder import AutoencoderTask
from aelab.tasks.captioning import CaptioningTask
from aelab.tasks.segmentation import SegmentationTask
from aelab.tasks.translation import TranslationTask
from aelab.tasks.vae import VAETask
from aelab.tasks.vqvae import VQVAETask

TASKS = {"autoencoder": AutoencoderTask, "vae": VAETask, "vqvae": VQVAETask,
         "segmentation": SegmentationTask, "translation": TranslationTask,
         "captioning": CaptioningTask}


def get_task(config: ml_collections.ConfigDict):
    choose("task", config.task, TASKS)
    return TASKS[config.task](config)

"""Task registry. A task owns its math and its config keys: model, loss, metrics, baselines,
figures (the contract: aelab.tasks.base.Task)."""

from __future__ import annotations

import ml_collections

from aelab.compiler import CompilePolicy
from aelab.errors import choose
from aelab.tasks.autoencoder import AutoencoderTask, ReconstructionTask
from aelab.tasks.base import Task
from aelab.tasks.captioning import CaptioningTask
from aelab.tasks.code_prior import CodePriorTask
from aelab.tasks.segmentation import SegmentationTask
from aelab.tasks.translation import TranslationTask
from aelab.tasks.vae import VAETask
from aelab.tasks.vqvae import VQVAETask

TASKS: dict[str, type[Task]] = {
    "autoencoder": AutoencoderTask, "vae": VAETask, "vqvae": VQVAETask, "vqprior": CodePriorTask,
    "segmentation": SegmentationTask, "translation": TranslationTask, "captioning": CaptioningTask}

__all__ = ["TASKS", "AutoencoderTask", "CaptioningTask", "CodePriorTask", "ReconstructionTask", "SegmentationTask", "Task",
           "TranslationTask", "VAETask", "VQVAETask", "get_task"]


def get_task(config: ml_collections.ConfigDict, policy: CompilePolicy | None = None) -> Task:
    choose("task", config.task, TASKS)
    return TASKS[config.task](config, policy)

"""The built-in tasks, registered as a plugin's are (aelab.register_task). A task owns its math and
its config keys: model, loss, metrics, baselines, figures (the contract: aelab.tasks.base.Task)."""

from __future__ import annotations

import ml_collections

from aelab.compiler import CompilePolicy
from aelab.registry import TASKS, register_task
from aelab.tasks.autoencoder import AutoencoderTask, ReconstructionTask
from aelab.tasks.base import RunLoader, Task
from aelab.tasks.captioning import CaptioningTask
from aelab.tasks.code_prior import CodePriorTask
from aelab.tasks.segmentation import SegmentationTask
from aelab.tasks.translation import TranslationTask
from aelab.tasks.vae import VAETask
from aelab.tasks.vqvae import VQVAETask

for _name, _cls in {"autoencoder": AutoencoderTask, "vae": VAETask, "vqvae": VQVAETask, "vqprior": CodePriorTask,
                    "segmentation": SegmentationTask, "translation": TranslationTask,
                    "captioning": CaptioningTask}.items():
    register_task(_name, _cls)

__all__ = ["AutoencoderTask", "CaptioningTask", "CodePriorTask", "ReconstructionTask", "RunLoader",
           "SegmentationTask", "Task", "TranslationTask", "VAETask", "VQVAETask", "get_task", "task_class"]


def task_class(name: str) -> type[Task]:
    """The registered task class `name` (a UsageError naming the known tasks where there is none)."""
    return TASKS.get(name).target


def get_task(config: ml_collections.ConfigDict, policy: CompilePolicy | None = None,
             runs: RunLoader | None = None) -> Task:
    """The task of a resolved config; `runs` reaches the other runs it reads (a code prior's VQ-VAE)."""
    return task_class(config.task)(config, policy, runs)

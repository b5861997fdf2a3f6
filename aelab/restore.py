"""Trained models back from a workdir, read-only: what every command that uses a run calls.

Nothing in the workdir is created, cleaned, moved or locked, so a run can be
used while its trainer still writes checkpoints there (an unreadable
checkpoint is reported and an older one used).
"""

from __future__ import annotations

import os

from flax import nnx

from aelab import checkpoint, config as config_lib
from aelab import workdir as wd
from aelab.errors import UsageError
from aelab.train import Run, build


def load_trained(workdir: str, task: str | None = None, use: str = "") -> tuple[Run, nnx.Module, int]:
    """(run, model, step) of a workdir's latest checkpoint, rebuilt from its config.json.

    With `task`, a run of any other task is refused (naming `use`, the command) before
    anything is loaded.
    """
    config_path = os.path.join(workdir, wd.CONFIG)
    if not os.path.exists(config_path):
        raise UsageError(f"{workdir}: no {wd.CONFIG}; pass the --workdir of an aelab training run")
    if not os.path.isdir(os.path.join(workdir, wd.CHECKPOINTS)):
        raise UsageError(f"{workdir}: no checkpoints yet; train first")
    config = config_lib.from_saved(wd.read_json(config_path))
    if task is not None and config.task != task:
        raise UsageError(f"{workdir}: {use} needs a {task} run, but this one trained task={config.task!r}")
    config.mesh.data = 1  # using a model needs one device, whatever the run trained on
    run = build(config, workdir)
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, wd.CHECKPOINTS), read_only=True)
    try:
        step, state = ckpt.restore_latest(run.state)
    finally:
        ckpt.close()
    if step == 0:
        raise UsageError(f"{workdir}: no checkpoint restores; train first")
    model, _ = nnx.merge(run.graphdef, state)
    return run, model, step

"""Models trained in your own loop, as workdirs every aelab command reads: `aelab.build_model` gives
the model a config describes, `aelab.save` writes a trained one as a run (config.json,
model.json, env.json and one checkpoint), so that `aelab embed`, `probe`, `sample`, ... and
`aelab.load` use it as they use a run of `aelab train`.

    model = aelab.build_model(config, example_shape=(8, 8, 1))
    ...                                   # your own optax loop over model's nnx.Param state
    aelab.save(model, config, "runs/mine", example_shape=(8, 8, 1))
"""

from __future__ import annotations

import os

import jax
import ml_collections
from flax import nnx

from aelab import checkpoint, config as config_lib, data, optim, restore, steps, tasks
from aelab import workdir as wd
from aelab.compiler import CompilePolicy
from aelab.errors import UsageError


def _task(config: ml_collections.ConfigDict) -> tuple[ml_collections.ConfigDict, tasks.Task]:
    resolved = config_lib.resolve(config)
    config_lib.validate(resolved)
    return resolved, tasks.get_task(resolved, CompilePolicy.for_config(resolved), restore.RUNS)


def build_model(config: ml_collections.ConfigDict, example_shape, seed: int | None = None) -> nnx.Module:
    """The model `config` describes, for examples of `example_shape` (an image's (H, W, C)),
    its parameters drawn from `seed` (default: config.seed), as `aelab train` would start it."""
    resolved, task = _task(config)
    key = jax.random.key(resolved.seed if seed is None else seed)
    return steps.model_and_optimizer(resolved, task, tuple(example_shape), key)[0]


def save(model: nnx.Module, config: ml_collections.ConfigDict, workdir: str, example_shape=None,
         step: int = 1) -> str:
    """Writes `model`, trained however you like, as the run of `config` in `workdir` (which must not
    exist, or be empty), at training step `step` (>= 1); returns `workdir`. `model` must be the
    model `config` describes (`build_model`): the same parameters, of the same shapes. Without
    `example_shape` the config's data set is read for it. The run is written in a folder beside
    `workdir` and renamed into place: never half a workdir. Its optimizer state is a fresh one."""
    if step < 1:
        raise UsageError(f"step={step} must be >= 1 (a run's checkpoint step)")
    if os.path.exists(workdir) and (not os.path.isdir(workdir) or os.listdir(workdir)):
        raise UsageError(f"{workdir} exists and is not an empty folder; aelab.save writes a new run")
    resolved, task = _task(config)
    if example_shape is None:
        example_shape = task.prepare(data.load(resolved.data, stream_above_mb=0, verify=False)).image_shape
    template, optimizer = steps.model_and_optimizer(resolved, task, tuple(example_shape), jax.random.key(0))
    _check_same_model(model, template)
    nnx.update(template, nnx.state(model))
    parent = os.path.dirname(os.path.abspath(workdir))
    with wd.scratch(parent, ".save-") as staging:
        wd.record_start(staging, resolved.to_dict(), 0, [], {"example_shape": list(example_shape)})
        task.save_assets(staging)
        ckpt = checkpoint.Checkpointer(os.path.join(staging, wd.CHECKPOINTS), keep=1)
        try:
            ckpt.save(step, nnx.state((template, optimizer)), resolved.to_dict())
        finally:
            ckpt.close()
        if os.path.isdir(workdir):
            os.rmdir(workdir)  # empty, checked above
        wd.release(staging)
        os.rename(staging, workdir)
    return workdir


def _check_same_model(model: nnx.Module, template: nnx.Module) -> None:
    """Refuses (UsageError) a model whose variables differ, in path or shape, from the config's."""
    given = {path: tuple(v.shape) for path, v in optim.param_paths(nnx.state(model)).items()}
    wanted = {path: tuple(v.shape) for path, v in optim.param_paths(nnx.state(template)).items()}
    differ = [f"{path}: {given.get(path, 'missing')} (the config's: {wanted.get(path, 'none')})"
              for path in sorted(set(given) | set(wanted)) if given.get(path) != wanted.get(path)]
    if differ:
        raise UsageError(f"the model is not the one the config describes ({len(differ)} differences, e.g. "
                         f"{'; '.join(differ[:3])}); build it with aelab.build_model(config, example_shape)")

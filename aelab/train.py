"""The trainer: one pure, jit-compiled `train_step` and one loop for every task.

`train_and_evaluate(config, workdir)` validates everything, then trains,
evaluates, checkpoints and writes the workdir contract. Running it again on
the same workdir resumes from the latest checkpoint; since data order and
randomness are functions of (seed, step), a resumed run continues bit-exactly.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

from aelab import checkpoint, config as config_lib, data, optim, tasks
from aelab import workdir as wd
from aelab.errors import UsageError
from aelab.writer import MetricWriter, read_metrics

# Keys whose change would make a checkpoint mean something else: a resume that
# changes one of them is refused. Everything else (num_steps, logging) may change.
RESUME_LOCKED = ("seed", "task", "loss", "model", "data", "optimizer", "train.batch_size")


@dataclasses.dataclass
class Run:
    """Everything built from a config before anything is written."""

    config: ml_collections.ConfigDict
    dataset: data.Dataset
    task: Any
    graphdef: nnx.GraphDef
    state: nnx.State
    batches: data.TrainBatches
    train_key: jax.Array
    eval_key: jax.Array


def build(config: ml_collections.ConfigDict) -> Run:
    """Validates the config, loads the data and initializes model and optimizer.

    Raises UsageError on any bad input; touches no file.
    """
    config_lib.validate(config)
    task = tasks.get_task(config)
    dataset = data.load(config.data)
    batches = data.TrainBatches(dataset.train, config.train.batch_size, config.seed)
    init_key, train_key, eval_key = jax.random.split(jax.random.key(config.seed), 3)
    model = task.build_model(dataset.image_shape, nnx.Rngs(params=init_key))
    tx = optim.make_optimizer(config.optimizer, config.train.num_steps)
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    graphdef, state = nnx.split((model, optimizer))
    return Run(config, dataset, task, graphdef, state, batches, train_key, eval_key)


def make_train_step(graphdef: nnx.GraphDef, task) -> Callable:
    """A pure (state, batch, rng) -> (state, metrics), compiled once, state donated.

    The step's key is `fold_in(rng, step)`, so randomness depends only on the step.
    """
    @functools.partial(jax.jit, donate_argnums=0)
    def train_step(state, batch, rng):
        model, optimizer = nnx.merge(graphdef, state)
        step_rng = jax.random.fold_in(rng, optimizer.step[...])
        (_, metrics), grads = nnx.value_and_grad(task.loss_fn, has_aux=True)(model, batch, step_rng)
        optimizer.update(model, grads)
        metrics["grad_norm"] = optax.global_norm(grads)
        return nnx.state((model, optimizer)), metrics

    return train_step


def make_eval_step(graphdef: nnx.GraphDef, task) -> Callable:
    """(state, batch, rng) -> masked sums of the task's per-example metrics, plus `count`."""
    @jax.jit
    def eval_step(state, batch, rng):
        model, _ = nnx.merge(graphdef, state)
        per_example = task.eval_metrics(model, batch, rng)
        mask = batch["mask"]
        sums = {k: jnp.sum(v * mask) for k, v in per_example.items()}
        sums["count"] = jnp.sum(mask)
        return sums

    return eval_step


def evaluate_split(eval_step, state, split: data.Split, batch_size: int, rng) -> dict[str, float]:
    """Means over every example of `split` (padding masked out)."""
    totals = None
    for batch in data.eval_batches(split, batch_size):
        sums = eval_step(state, batch, rng)
        totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    totals = jax.device_get(totals)
    count = totals.pop("count")
    return {k: float(v / count) for k, v in totals.items()}


def locked_differences(old: dict, new: dict) -> list[str]:
    """The RESUME_LOCKED keys whose values differ between two config dicts, as 'key: a -> b'."""
    def flat(tree, prefix=""):
        for key, value in tree.items():
            if isinstance(value, dict):
                yield from flat(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", value
    old_flat, new_flat = dict(flat(old)), dict(flat(new))
    return [f"{key}: {old_flat.get(key)!r} -> {new_flat.get(key)!r}"
            for key in sorted(set(old_flat) | set(new_flat))
            if any(key == lock or key.startswith(lock + ".") for lock in RESUME_LOCKED)
            and _canon(old_flat.get(key)) != _canon(new_flat.get(key))]


def _canon(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def prepare_workdir(run: Run, workdir: str) -> None:
    """Checks a resume is compatible, then writes config.json and env.json."""
    config_path = os.path.join(workdir, wd.CONFIG)
    new = run.config.to_dict()
    if os.path.exists(os.path.join(workdir, wd.CHECKPOINTS)) and os.path.exists(config_path):
        changed = locked_differences(wd.read_json(config_path), _json_roundtrip(new))
        if changed:
            raise UsageError(
                f"{workdir} holds a run with a different config ({'; '.join(changed)}); "
                "use a new --workdir or restore those values")
    wd.write_json(config_path, new)
    wd.write_json(os.path.join(workdir, wd.ENV), wd.environment())


def _json_roundtrip(obj):
    import json
    return json.loads(json.dumps(obj))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       should_stop: Callable[[int], bool] | None = None) -> dict[str, Any]:
    """Trains (or resumes) the run of `config` in `workdir` and writes the workdir contract.

    `should_stop(step)` is polled after every step; when it returns True the
    loop checkpoints and returns early (signals use this). Returns the summary
    (or, when stopped early, {"step": ..., "stopped": True}).
    """
    run = build(config)
    config = run.config
    is_chief = jax.process_index() == 0
    if is_chief:
        prepare_workdir(run, workdir)
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, wd.CHECKPOINTS), config.train.keep_checkpoints)
    state, step = run.state, 0
    if ckpt.latest_step() is not None:
        step = ckpt.latest_step()
        state = ckpt.restore(step, state)
    summary_path = os.path.join(workdir, wd.SUMMARY)
    if step >= config.train.num_steps and os.path.exists(summary_path):
        ckpt.close()
        return wd.read_json(summary_path)  # already complete: nothing to redo
    writer = MetricWriter(workdir, step, config.train.num_steps, config.train.tensorboard,
                          enabled=is_chief)
    train_step = make_train_step(run.graphdef, run.task)
    eval_step = make_eval_step(run.graphdef, run.task)
    t = config.train
    stopped = False
    bar = tqdm(total=t.num_steps, initial=step, disable=not (t.progress and is_chief),
               desc=os.path.basename(os.path.normpath(workdir)), dynamic_ncols=True)
    pending: list[dict] = []  # device-side metrics since the last log: no per-step host sync
    window_start, window_step = time.perf_counter(), step
    try:
        while step < t.num_steps:
            state, metrics = train_step(state, run.batches(step), run.train_key)
            pending.append(metrics)
            step += 1
            if step % t.log_every == 0 or step == t.num_steps:
                means = {k: float(v) for k, v in jax.device_get(
                    jax.tree.map(lambda *xs: jnp.mean(jnp.stack(xs)), *pending)).items()}
                now = time.perf_counter()
                means["steps_per_s"] = (step - window_step) / max(now - window_start, 1e-9)
                window_start, window_step, pending = now, step, []
                writer.write(step, "train", means)
                bar.set_postfix(loss=f"{means['loss']:.4g}", steps_per_s=f"{means['steps_per_s']:.1f}")
                bar.update(step - bar.n)
            if step % t.eval_every == 0 and step < t.num_steps:
                writer.write(step, "val", evaluate_split(
                    eval_step, state, run.dataset.val, t.eval_batch_size, run.eval_key))
            stopping = should_stop is not None and should_stop(step) and step < t.num_steps
            if step % t.checkpoint_every == 0 or step == t.num_steps or stopping:
                ckpt.save(step, state)
            if stopping:
                stopped = True
                break
        if stopped:
            return {"step": step, "stopped": True}
        return finish(run, state, step, eval_step, workdir, writer, is_chief)
    finally:
        bar.close()
        ckpt.close()
        writer.close()


def finish(run: Run, state, step: int, eval_step, workdir: str, writer: MetricWriter,
           is_chief: bool) -> dict[str, Any]:
    """Final evaluation on val and test ("eval"), baselines, figures and summary.json."""
    t = run.config.train
    results = {split: evaluate_split(eval_step, state, run.dataset.split(name), t.eval_batch_size,
                                     run.eval_key)
               for split, name in (("val", "val"), ("eval", "test"))}
    summary = {"step": step, "eval": results["eval"], "val": results["val"],
               "baselines": run.task.baselines(run.dataset),
               "data": {"name": run.dataset.name, "image_shape": list(run.dataset.image_shape),
                        **{f"num_{name}": len(run.dataset.split(name))
                           for name in ("train", "val", "test")}}}
    if is_chief:
        for split in ("val", "eval"):
            writer.write(step, split, results[split])
        model, _ = nnx.merge(run.graphdef, state)
        run.task.figures(model, run.dataset, list(read_metrics(writer.path)),
                         os.path.join(workdir, wd.FIGURES), summary["baselines"])
        wd.write_json(os.path.join(workdir, wd.SUMMARY), summary)
    return summary

"""The trainer: one loop for every task around the compiled steps of aelab.steps.

`train_and_evaluate(config, workdir)` validates everything, then trains,
evaluates, checkpoints and writes the workdir contract. Running it again on
the same workdir resumes from the latest checkpoint; since data order and
randomness are functions of (seed, step), a resumed run continues bit-exactly.
`build(config)` is everything made from a config before anything is written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import os
import re
import sys
import time
from typing import Any, Callable, Iterator

import jax
import ml_collections
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from aelab import (checkpoint, compiler, config as config_lib, data, finetune, models, optim, parallel, restore,
                   resume, steps, tasks)
from aelab import workdir as wd
from aelab.compiler import CompilePolicy
from aelab.data.lazy import LazyImages
from aelab.errors import NonFiniteError, UsageError
from aelab.evaluate import evaluate_split
from aelab.writer import MetricWriter, read_metrics


@dataclasses.dataclass
class Run:
    """Everything built from a config before anything is written."""

    config: ml_collections.ConfigDict
    dataset: data.Dataset
    task: tasks.Task
    policy: CompilePolicy  # for this run's model (aelab.compiler)
    graphdef: nnx.GraphDef
    state: nnx.State
    batches: data.TrainBatches
    train_key: jax.Array
    eval_key: jax.Array
    mesh: jax.sharding.Mesh
    fingerprint: dict  # of each split as read (aelab.data.fingerprint), stored with every checkpoint
    cache_counts_at_start: dict | None = None  # compiler.cache_counts() before the run compiled


def check_config(config: ml_collections.ConfigDict,
                 workdir: str | None = None) -> tuple[ml_collections.ConfigDict, tasks.Task]:
    """(the resolved config, its task): everything about a config that can be checked without
    reading its data: declared keys, values, names (task, model, loss, data prefix), the
    architecture's own check, local data paths and the run to start from (train.init_from;
    not `workdir`, the run's own). Raises UsageError."""
    resolved = config_lib.resolve(config)
    config_lib.validate(resolved)
    task = tasks.get_task(resolved, CompilePolicy.for_config(resolved), restore.RUNS)
    if task.family:
        models.check(task.family, resolved.model)
    data.check_name(resolved.data)
    if resolved.train.init_from:
        finetune.check(resolved.train.init_from, workdir)
    cache = os.path.expanduser(resolved.train.compile_cache)
    if workdir and cache and wd.inside(cache, workdir):
        raise UsageError(f"train.compile_cache={wd.shown(resolved.train.compile_cache)} lies inside the workdir; "
                         "a run's folder holds data, never programs: name a folder outside it, or \"\" (off)")
    return resolved, task


def build(config: ml_collections.ConfigDict, workdir: str | None = None) -> Run:
    """Validates the config, loads the data and initializes model and optimizer.

    A task's assets already in `workdir` (a tokenizer) are read, not rebuilt.
    Raises UsageError on any bad input; writes no file.
    """
    config, task = check_config(config, workdir)
    compiler.enable_compile_cache(config.train.compile_cache)
    cache_counts = compiler.cache_counts()
    mesh = parallel.make_mesh(config)
    if workdir:
        task.load_assets(workdir)
    loaded = data.load(config.data, stream_above_mb=config.train.device_data_mb)
    fingerprint = data.fingerprint(loaded)
    parallel.check_agreement(config=config.to_dict(), data=fingerprint)  # one run, or none
    dataset = task.prepare(loaded)
    batches = data.TrainBatches(dataset.train, config.train.batch_size, config.seed, task.bucket_lengths)
    init_key, train_key, eval_key = jax.random.split(jax.random.key(config.seed), 3)
    model, optimizer = steps.model_and_optimizer(config, task, dataset.image_shape, init_key)
    if config.train.trainable:
        _check_trainable(config.train.trainable, model)
    if config.train.early_stopping_patience:
        _check_metric(task, model, dataset, config.train.early_stopping_metric)
    graphdef, state = nnx.split((model, optimizer))
    # Replicated on the data mesh: a restore onto this target lands the same way.
    state, train_key, eval_key = parallel.put_replicated((state, train_key, eval_key), mesh)
    return Run(config, dataset, task, task.policy.with_model(model), graphdef, state, batches,
               train_key, eval_key, mesh, fingerprint, cache_counts)


def _check_trainable(pattern: str, model: nnx.Module) -> None:
    """Refuses (UsageError) a train.trainable that matches no parameter, listing some paths."""
    paths = list(optim.param_paths(nnx.state(model, nnx.Param)))
    if not any(re.search(pattern, path) for path in paths):
        shown = ", ".join(paths[:6]) + (", ..." if len(paths) > 6 else "")
        raise UsageError(f"train.trainable={pattern!r} matches no parameter; the parameters: {shown}")


def _check_metric(task, model, dataset: data.Dataset, metric: str) -> None:
    """Raises a UsageError unless `metric` is one of the task's validation metrics (traced, not run)."""
    batch = next(data.eval_batches(dataset.val, 2))
    names = jax.eval_shape(lambda b: task.eval_metrics(model, b, jax.random.key(0), False), batch)
    if metric not in names:
        raise UsageError(f"train.early_stopping_metric={metric!r} is not a validation metric of task "
                         f"{type(task).__name__}; known: {', '.join(sorted(names))}")


def on_device(run: Run) -> bool:
    """Whether the training split goes to the device(s) whole: it is in memory, fits in
    `train.device_data_mb`, and its batches are not bucketed (bucketing cuts them on the host)."""
    arrays, budget = run.batches.arrays, run.config.train.device_data_mb
    return (not any(isinstance(a, LazyImages) for a in arrays.values()) and run.batches.bucket_of is None
            and sum(a.nbytes for a in arrays.values()) <= budget * 2 ** 20)


def host_batches(run: Run, first_step: int) -> Iterator[dict[str, jax.Array]]:
    """The device batches of steps `first_step` onwards when they are made on the host: this
    process reads only its own rows of each, and `train.input_threads` threads make them ahead
    (or, for streamed images, `train.input_processes` worker processes)."""
    t, part, parts = run.config.train, jax.process_index(), jax.process_count()
    streamed = any(isinstance(a, LazyImages) for a in run.batches.arrays.values())
    if t.input_processes and streamed:
        rows = data.in_processes(functools.partial(run.batches, part=part, parts=parts), first_step,
                                 t.num_steps, t.input_processes, t.prefetch_batches)
        # Copied out of the workers' shared memory at once, so that grain frees each block now.
        return Closing(rows, (parallel.put_local_batch({k: np.array(v) for k, v in r.items()}, run.mesh)
                              for r in rows))

    def make(step: int) -> dict[str, jax.Array]:
        return parallel.put_local_batch(run.batches(step, part, parts), run.mesh)

    if not t.input_threads:
        return map(make, itertools.count(first_step))
    return data.prefetched(make, first_step, t.num_steps, t.input_threads, t.prefetch_batches)


class Closing:
    """`batches`, with `close()` closing `source` (worker processes and their shared memory)."""

    def __init__(self, source, batches: Iterator):
        self.source, self.batches = source, batches

    def __next__(self):
        return next(self.batches)

    def close(self) -> None:
        self.source.close()


def device_batches(run: Run, width: int) -> Callable[[int, int], tuple] | None:
    """`(step, count) -> (data, indices (B, width))` for `make_indexed_train_steps` when the training
    arrays fit in `train.device_data_mb` and batches are not bucketed (bucketing cuts them to
    lengths on the host); None otherwise. Column j < count holds the rows of `run.batches(step + j)`."""
    if not on_device(run):
        return None
    data = parallel.put_replicated(run.batches.arrays, run.mesh)

    def batches(step: int, count: int) -> tuple:
        columns = [run.batches.indices(step + j) for j in range(count)]
        columns += columns[-1:] * (width - count)  # a fixed shape; the device runs only `count`
        return data, parallel.put_batch({"index": np.stack(columns, axis=1)}, run.mesh)["index"]

    return batches


def evaluate_with_outputs(run: Run, eval_step, state, split_name: str, final: bool, step: int,
                          workdir: str, is_chief: bool) -> dict[str, float]:
    """`evaluate_split`, plus the task's metrics of decoded outputs (BLEU), whose outputs the
    chief writes to DIR/samples/<split>_<step>.txt."""
    split = run.dataset.split(split_name)
    results = evaluate_split(eval_step, state, split, run.config.train.eval_batch_size,
                             run.eval_key, run.task, run.mesh)
    model, _ = nnx.merge(run.graphdef, state)
    samples = os.path.join(workdir, wd.SAMPLES, f"{split_name}_{step}.txt") if is_chief else None
    results.update(run.task.generation_metrics(model, split, final, samples))
    return results


class Waiting:
    """An iterator of batches that adds up how long the loop waited for them (the first batch,
    which waits for the input threads to start, is not counted)."""

    def __init__(self, batches: Iterator):
        self.batches, self.seconds, self.started = batches, 0.0, False

    def __next__(self):
        begin = time.perf_counter()
        batch = next(self.batches)
        if self.started:
            self.seconds += time.perf_counter() - begin
        self.started = True
        return batch

    def close(self) -> None:
        if hasattr(self.batches, "close"):
            self.batches.close()


class Window:
    """Per-step metrics since the last log, kept on device until read (no per-step host sync)."""

    SAMPLED = ("grad_norm",)  # computed by a window's last step only (train_step_fn): logged as is

    def __init__(self, first_step: int, train: ml_collections.ConfigDict):
        self.first_step = first_step
        self.skip = train.skip_nonfinite
        self.max_in_a_row = train.max_consecutive_nonfinite
        self.in_a_row = 0  # bad steps in a row at the end of the previous window
        self._window_end_in_a_row = 0  # ... and at the end of this one (committed by restart)
        self.metrics: list[tuple[dict, int | None]] = []
        self.steps = 0
        self.start_time = time.perf_counter()
        self.seconds = 0.0  # of training in the windows ended so far, evaluations left out

    def add(self, metrics: dict, count: int | None = None) -> None:
        """One step's scalar metrics, or (count given) the first `count` rows of several steps'."""
        self.metrics.append((metrics, count))
        self.steps += 1 if count is None else count

    def summarize(self) -> dict[str, float]:
        """Means over the window's finite steps; raises NonFiniteError where training went bad."""
        fetched = jax.device_get(self.metrics)
        stacked = {k: np.concatenate([np.atleast_1d(m[k])[:count] for m, count in fetched]) for k in fetched[0][0]}
        sampled = {k: stacked.pop(k)[-1] for k in self.SAMPLED if k in stacked}
        finite = np.all([np.isfinite(v) for v in stacked.values()], axis=0)
        finite[-1] &= all(np.isfinite(v) for v in sampled.values())
        in_a_row = self.in_a_row  # counted afresh from the window's start: calling twice is harmless
        for i, ok in enumerate(finite):
            in_a_row = 0 if ok else in_a_row + 1
            if not ok and (not self.skip or in_a_row > self.max_in_a_row):
                at_step = {k: v[i] for k, v in stacked.items()} | (sampled if i == len(finite) - 1 else {})
                metric = next(k for k, v in sorted(at_step.items()) if not np.isfinite(v))
                raise NonFiniteError(self.first_step + i + 1, metric, float(at_step[metric]))
        self._window_end_in_a_row = in_a_row
        means = {k: float(np.mean(v[finite])) if finite.any() else float("nan")
                 for k, v in stacked.items()} | {k: float(v) for k, v in sampled.items()}
        if self.skip:
            means["skipped_steps"] = float(np.sum(~finite))
        return means

    def check(self) -> None:
        """Raises NonFiniteError if any step of the window went bad (call before checkpointing)."""
        if self.metrics:
            self.summarize()

    def exclude(self, seconds: float) -> None:
        """Leaves `seconds` (an evaluation inside the window) out of its steps per second."""
        self.start_time += seconds

    def restart(self, first_step: int) -> float:
        """Starts the next window; returns the steps per second of the one that ended."""
        now = time.perf_counter()
        rate = self.steps / max(now - self.start_time, 1e-9)
        self.seconds += now - self.start_time
        self.in_a_row = self._window_end_in_a_row
        self.first_step, self.metrics, self.steps, self.start_time = first_step, [], 0, now
        return rate


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       should_stop: Callable[[int], bool] | None = None) -> dict[str, Any]:
    """Trains (or resumes) the run of `config` in `workdir` and writes the workdir contract.

    `should_stop(step)` is polled after every dispatch (at most
    `train.steps_per_dispatch` steps); when it returns True the loop
    checkpoints and returns early (signals use this). Returns the summary
    (or, when stopped early, {"step": ..., "stopped": True}). Raises
    UsageError on bad input (before writing anything), NonFiniteError when
    training diverges and WriteError when a file of the workdir cannot be
    written (a full disk): the checkpoints written before stay good.
    """
    started = time.perf_counter()
    wd.check_workdir(workdir)
    for name in (wd.CHECKPOINTS, wd.CONFIG, wd.SUMMARY):  # a workdir's files stay in it
        if os.path.lexists(os.path.join(workdir, name)):
            wd.confined(workdir, name, "the run's")
    run = build(config, workdir)
    is_chief = jax.process_index() == 0
    lock = wd.exclusive(workdir) if is_chief else contextlib.nullcontext()
    with lock:
        ckpt = checkpoint.Checkpointer(os.path.join(workdir, wd.CHECKPOINTS),
                                       run.config.train.keep_checkpoints)
        try:
            with wd.writes_reported(workdir, ckpt.latest_step):
                return _resume(run, ckpt, workdir, should_stop, is_chief, started)
        finally:
            with wd.writes_reported(workdir, ckpt.latest_step):
                ckpt.close()


def _resume(run: Run, ckpt: checkpoint.Checkpointer, workdir: str, should_stop, is_chief: bool,
            started: float) -> dict[str, Any]:
    """Checks the workdir's earlier run against this config, restores it and trains on."""
    saved = ckpt.saved_config()
    changes = resume.check_resume(workdir, run.config.to_dict(), saved) if is_chief else []
    step, state = ckpt.restore_latest(run.state)
    if step and not run.config.train.accept_changed_data:
        _check_same_data(ckpt.saved_data(step), run.fingerprint, step)
    report = None
    if step == 0 and run.config.train.init_from:  # a first start: the source's parameters, once
        model, optimizer = nnx.merge(run.graphdef, state)
        report = finetune.initialize(model, run.config.train.init_from)
        state = parallel.put_replicated(nnx.state((model, optimizer)), run.mesh)
    if step > run.config.train.num_steps:  # before anything else: a finished run's summary is no answer
        raise UsageError(f"train.num_steps={run.config.train.num_steps} is below the step this workdir's "
                         f"checkpoint has reached ({step}); raise it to at least {step}, or use a new --workdir")
    if os.path.lexists(os.path.join(workdir, wd.SUMMARY)):  # complete (or stopped early): nothing to redo
        done = wd.read_record(workdir, wd.SUMMARY)
        if done.get("step") == step and (step == run.config.train.num_steps or done.get("early_stopped")):
            return done
    if is_chief:
        wd.remove_stale_temporaries(workdir)
        wd.record_start(workdir, run.config.to_dict(), step, changes,
                        {"example_shape": list(run.dataset.image_shape)})
        run.task.save_assets(workdir)
        if report is not None:
            wd.write_json(os.path.join(workdir, finetune.INIT_REPORT), report)
            print(finetune.table(report), file=sys.stderr)
    try:
        return _loop(run, state, step, ckpt, workdir, should_stop, is_chief, started)
    except NonFiniteError as e:
        e.last_checkpoint = ckpt.latest_step()
        raise


def _check_same_data(saved: dict | None, now: dict, step: int) -> None:
    """Refuses (UsageError) to resume on data other than the checkpoint's (None: a checkpoint of a
    version that recorded none)."""
    if saved is None or saved == now:
        return
    def count(fingerprint: dict, name: str) -> int:
        return fingerprint.get(name, {}).get("count", 0)

    changed = [f"{name} {count(saved, name)} -> {count(now, name)} examples"
               if count(saved, name) != count(now, name) else f"{name}'s examples"
               for name in ("train", "val", "test") if saved.get(name) != now.get(name)]
    raise UsageError(f"the data changed since checkpoint step {step} was trained on it ({'; '.join(changed)}); "
                     "resume on the data it trained with, or set train.accept_changed_data=True to go on with this")


def _loop(run: Run, state, step: int, ckpt: checkpoint.Checkpointer, workdir: str,
          should_stop, is_chief: bool, started: float) -> dict[str, Any]:
    t = run.config.train
    first_step_s = None  # from the call to its first step's result: data, build, restore, compile
    writer = MetricWriter(workdir, step, t.num_steps, t.tensorboard, enabled=is_chief)
    per_dispatch = run.policy.steps_per_dispatch(t.steps_per_dispatch)
    options = steps.train_step_options(t)
    on_device = device_batches(run, per_dispatch)
    batches = None
    if on_device:
        indexed_steps = steps.make_indexed_train_steps(run.graphdef, run.task, run.policy, per_dispatch, **options)
        train_steps = lambda state, step, count, key: indexed_steps(  # noqa: E731
            state, *on_device(step, count), count, key)
    else:
        host_step = steps.make_train_step(run.graphdef, run.task, run.policy, **options)
        batches = Waiting(host_batches(run, step))
        train_steps = lambda state, step, count, key: host_step(state, next(batches), key)  # noqa: E731
    eval_step = steps.make_eval_step(run.graphdef, run.task, run.policy)
    bar = tqdm(total=t.num_steps, initial=step, disable=not (t.progress and is_chief),
               desc=os.path.basename(os.path.normpath(workdir)), dynamic_ncols=True)
    window = Window(step, t)
    multihost = jax.process_count() > 1  # preemption notices need the distributed runtime
    # Validation history so far (the log is already rewound to `step`): patience survives resume.
    history = [r[t.early_stopping_metric] for r in read_metrics(writer.path)
               if r["split"] == "val" and r.get(t.early_stopping_metric) is not None]
    early_stop = None
    try:
        while step < t.num_steps and early_stop is None:
            count = dispatch_length(step, t, per_dispatch) if on_device and first_step_s is not None else 1
            state, metrics = train_steps(state, step, count, run.train_key)
            window.add(metrics, count if on_device else None)
            if first_step_s is None:
                jax.block_until_ready(metrics)
                first_step_s = time.perf_counter() - started
            step += count
            if step % t.log_every == 0 or step == t.num_steps:
                means = window.summarize()
                means["steps_per_s"] = window.restart(step)
                writer.write(step, "train", means)
                bar.set_postfix(loss=f"{means['loss']:.4g}", steps_per_s=f"{means['steps_per_s']:.1f}")
                bar.update(step - bar.n)
            if step % t.eval_every == 0 and step < t.num_steps:
                eval_start = time.perf_counter()
                val = evaluate_with_outputs(run, eval_step, state, "val", False, step, workdir, is_chief)
                window.exclude(time.perf_counter() - eval_start)
                writer.write(step, "val", val)
                history.append(val.get(t.early_stopping_metric))
                early_stop = patience_exhausted(history, t)
            stopping = step < t.num_steps and stop_agreed(should_stop, step, ckpt, multihost)
            if step % t.checkpoint_every == 0 or step == t.num_steps or stopping or early_stop:
                window.check()  # never checkpoint a diverged state
                ckpt.save(step, state, run.config.to_dict(), run.fingerprint)
            if stopping:
                return {"step": step, "stopped": True}
        ckpt.wait()  # the final checkpoint is on disk before summary.json says the run is done
        waited = batches.seconds / window.seconds if batches is not None and window.seconds else None
        return finish(run, state, step, workdir, writer, is_chief, eval_step, early_stop, first_step_s, waited)
    finally:
        bar.close()
        writer.close()
        if batches is not None:
            batches.close()


def _cache_use(run: Run) -> dict[str, int] | None:
    """This invocation's compilations that asked the persistent cache, and those it served (None
    with the cache off)."""
    if not jax.config.jax_compilation_cache_dir or run.cache_counts_at_start is None:
        return None
    now = compiler.cache_counts()
    return {key: now[key] - run.cache_counts_at_start[key] for key in now}


def stop_agreed(should_stop, step: int, ckpt: checkpoint.Checkpointer, multihost: bool) -> bool:
    """Whether to checkpoint and stop after `step`: a signal to this process (`should_stop`), or,
    with several processes, to any of them or a preemption notice, agreed by all of them so that
    all stop at the same step and write one checkpoint together."""
    local = should_stop is not None and should_stop(step)
    if not multihost:
        return local
    from jax.experimental import multihost_utils

    anyone = bool(np.any(multihost_utils.process_allgather(np.array([local]))))
    return anyone or ckpt.manager.reached_preemption(step)


def dispatch_length(step: int, train: ml_collections.ConfigDict, per_dispatch: int) -> int:
    """How many steps the next dispatch runs: up to `per_dispatch`, ending at the next log,
    evaluation or checkpoint step or the end, so those happen exactly where they would
    step by step."""
    end = min(step + per_dispatch, train.num_steps,
              *((step // every + 1) * every for every in (train.log_every, train.eval_every,
                                                           train.checkpoint_every)))
    return end - step


def patience_exhausted(history: list, train: ml_collections.ConfigDict) -> dict | None:
    """Early stopping: {"metric", "best", "best_eval", "evals_without_improvement"} once the
    validation metric has not improved (lower is better, by more than min_delta) for
    `early_stopping_patience` evaluations; None while training should go on."""
    if not train.early_stopping_patience:
        return None
    best, best_index = float("inf"), -1
    for i, value in enumerate(history):
        if value < best - train.early_stopping_min_delta:
            best, best_index = value, i
    waited = len(history) - 1 - best_index
    if waited < train.early_stopping_patience:
        return None
    return {"metric": train.early_stopping_metric, "best": best, "best_eval": best_index + 1,
            "evals_without_improvement": waited}


def finish(run: Run, state, step: int, workdir: str, writer: MetricWriter,
           is_chief: bool, eval_step: Callable, early_stop: dict | None = None,
           time_to_first_step_s: float | None = None, input_wait_fraction: float | None = None) -> dict[str, Any]:
    """Final evaluation on val (with the loop's `eval_step`, already compiled) and test ("eval",
    with the task's expensive final metrics), baselines, figures and summary.json."""
    final_step = steps.make_eval_step(run.graphdef, run.task, run.policy, final=True)
    results = {  # the expensive final metrics (e.g. IWAE NLL, beam search) on the test split only
        "val": evaluate_with_outputs(run, eval_step, state, "val", False, step, workdir, is_chief),
        "eval": evaluate_with_outputs(run, final_step, state, "test", True, step, workdir, is_chief)}
    summary = {"step": step, "eval": results["eval"], "val": results["val"],
               "early_stopped": early_stop, "time_to_first_step_s": time_to_first_step_s,
               "compile_cache": _cache_use(run),
               "batches": "on device" if on_device(run) else "from host",
               # from host: the share of the training loop's time spent waiting for the next batch
               "input_wait_fraction": None if input_wait_fraction is None else round(input_wait_fraction, 4),
               "baselines": run.task.baselines(run.dataset),
               "data": {"name": run.dataset.name, "image_shape": list(run.dataset.image_shape),
                        **{f"num_{name}": len(run.dataset.split(name))
                           for name in ("train", "val", "test")}, **run.dataset.info}}
    if is_chief:
        for split in ("val", "eval"):
            writer.write(step, split, results[split])
        model, _ = nnx.merge(run.graphdef, state)
        run.task.figures(model, run.dataset, list(read_metrics(writer.path)),
                         os.path.join(workdir, wd.FIGURES), summary["baselines"])
        wd.write_json(os.path.join(workdir, wd.SUMMARY), summary)
    return summary


def load_trained(workdir: str, task: str | None = None, use: str = "") -> tuple[Run, nnx.Module, int]:
    """(run, model, step): the model of a workdir's newest checkpoint with the run built from its
    config and data (`build`), for code that scores it as training does."""
    config = restore.saved_config(workdir, task, use)
    run = build(config, workdir)
    step, state = restore.restore_state(workdir, run.state)
    model, _ = nnx.merge(run.graphdef, state)
    return run, model, step

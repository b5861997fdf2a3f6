"""The trainer: one pure, jit-compiled `train_step` and one loop for every task.

`train_and_evaluate(config, workdir)` validates everything, then trains,
evaluates, checkpoints and writes the workdir contract. Running it again on
the same workdir resumes from the latest checkpoint; since data order and
randomness are functions of (seed, step), a resumed run continues bit-exactly.
"""

from __future__ import annotations

import contextlib
import dataclasses
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

from aelab import checkpoint, compiler, config as config_lib, data, optim, parallel, tasks
from aelab import workdir as wd
from aelab.errors import UsageError
from aelab.writer import MetricWriter, read_metrics


class NonFiniteError(RuntimeError):
    """Training produced a non-finite metric; the checkpoints written before it are kept."""

    def __init__(self, step: int, metric: str, value: float):
        super().__init__(step, metric, value)
        self.step, self.metric, self.value = step, metric, value
        self.last_checkpoint: int | None = None  # set by the loop, which knows its checkpoints

    def __str__(self) -> str:
        kept = (f"the last good checkpoint (step {self.last_checkpoint}) is kept"
                if self.last_checkpoint else "no checkpoint had been written")
        return (f"non-finite {self.metric}={self.value} at step {self.step}; training stopped and {kept}. "
                "Lower optimizer.learning_rate or set optimizer.grad_clip_norm, or start a new --workdir "
                "with train.skip_nonfinite=True to skip such steps")


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
    mesh: jax.sharding.Mesh


def check_config(config: ml_collections.ConfigDict):
    """Everything about a config that can be checked without reading its data: values, names
    (task, model, loss, data prefix) and local data paths. Returns the task; raises UsageError."""
    config_lib.validate(config)
    task = tasks.get_task(config)
    data.check_name(config.data)
    return task


def build(config: ml_collections.ConfigDict, workdir: str | None = None) -> Run:
    """Validates the config, loads the data and initializes model and optimizer.

    A task's assets already in `workdir` (a tokenizer) are read, not rebuilt.
    Raises UsageError on any bad input; writes no file.
    """
    task = check_config(config)
    enable_compile_cache(config.train.compile_cache)
    mesh = parallel.make_mesh(config)
    if workdir and hasattr(task, "load_assets"):
        task.load_assets(workdir)
    dataset = task.prepare(data.load(config.data))
    batches = data.TrainBatches(dataset.train, config.train.batch_size, config.seed,
                                getattr(task, "bucket_lengths", ()))
    init_key, train_key, eval_key = jax.random.split(jax.random.key(config.seed), 3)
    tx = optim.make_optimizer(config.optimizer, config.train.num_steps)
    if config.train.skip_nonfinite:  # updates with non-finite gradients are dropped, and counted
        tx = optax.apply_if_finite(tx, config.train.max_consecutive_nonfinite)
    model, optimizer = init_model_and_optimizer(task, dataset.image_shape, tx, init_key)
    if config.train.early_stopping_patience:
        _check_metric(task, model, dataset, config.train.early_stopping_metric)
    graphdef, state = nnx.split((model, optimizer))
    # Replicated on the data mesh: a restore onto this target lands the same way.
    state, train_key, eval_key = parallel.put_replicated((state, train_key, eval_key), mesh)
    return Run(config, dataset, task, graphdef, state, batches, train_key, eval_key, mesh)


def init_model_and_optimizer(task, example_shape, tx: optax.GradientTransformation,
                             key: jax.Array) -> tuple[nnx.Module, nnx.Optimizer]:
    """The task's model, parameters drawn from `key`, and its optimizer, created in one compiled
    program: the same bits as eagerly, where every initializer compiled a handful of tiny
    programs, each too small for the persistent cache (configs/mnist_ae.py: 59 of them, 2.2 s
    of every start; as one program 1.3 s cold, and cached)."""
    def create(k):
        model = task.build_model(example_shape, nnx.Rngs(params=k))
        return model, nnx.Optimizer(model, tx, wrt=nnx.Param)

    return nnx.jit(create)(key)


def enable_compile_cache(directory: str) -> None:
    """JAX's persistent compilation cache in `directory` ("" = off), so a resumed or repeated run
    skips compiling; a cache already chosen (JAX_COMPILATION_CACHE_DIR, or in code) wins.
    Programs that compile in 0.2 s or more are kept (JAX's default, 1 s, left the evaluation
    and decoding steps out)."""
    if directory and not jax.config.jax_compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", os.path.expanduser(directory))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


def _check_metric(task, model, dataset: data.Dataset, metric: str) -> None:
    """Raises a UsageError unless `metric` is one of the task's validation metrics (traced, not run)."""
    batch = next(data.eval_batches(dataset.val, 2))
    names = jax.eval_shape(lambda b: task.eval_metrics(model, b, jax.random.key(0), False), batch)
    if metric not in names:
        raise UsageError(f"train.early_stopping_metric={metric!r} is not a validation metric of task "
                         f"{type(task).__name__}; known: {', '.join(sorted(names))}")


COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def in_compute_dtype(loss_fn: Callable, dtype) -> Callable:
    """Mixed precision: `loss_fn` run on a copy of the model and batch cast to `dtype`, its
    loss and metrics returned in float32. Gradients flow back through the cast, so they
    (and the optimizer state and parameters) stay float32."""
    if dtype == jnp.float32:
        return loss_fn

    def cast(tree):
        return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)

    def mixed(model, batch, rng, step):
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        loss, metrics = loss_fn(nnx.merge(graphdef, cast(params), rest), cast(batch), rng, step)
        return loss.astype(jnp.float32), jax.tree.map(lambda m: m.astype(jnp.float32), metrics)

    return mixed


def train_step_fn(graphdef: nnx.GraphDef, task, compute_dtype: str = "float32", log_every: int = 1,
                  num_steps: int = 0) -> Callable:
    """The pure (state, batch, rng) -> (state, metrics) that `make_train_step` compiles.

    The step's key is `fold_in(rng, step)`, so randomness depends only on the step.
    `grad_norm` is computed only by the steps that end a log window (step count a multiple
    of `log_every`, or `num_steps`); the others report 0 for it (`Window` logs the window's
    last value). Every step computing it cost 5-9% of an MLP step on CPU.
    """
    loss_fn = in_compute_dtype(task.loss_fn, COMPUTE_DTYPES[compute_dtype])

    def train_step(state, batch, rng):
        model, optimizer = nnx.merge(graphdef, state)
        step = optimizer.step[...]
        (_, metrics), grads = nnx.value_and_grad(loss_fn, has_aux=True)(
            model, batch, jax.random.fold_in(rng, step), step)
        optimizer.update(model, optim.after_whole_backward(grads))
        logged = ((step + 1) % log_every == 0) | (step + 1 == num_steps)
        metrics["grad_norm"] = jax.lax.cond(logged, optim.global_norm,
                                            lambda _: jnp.zeros((), jnp.float32), grads)
        return nnx.state((model, optimizer)), metrics

    return train_step


def make_train_step(graphdef: nnx.GraphDef, task, compute_dtype: str = "float32",
                    ynn_dots: bool = False, log_every: int = 1, num_steps: int = 0) -> Callable:
    """`train_step_fn`, compiled once, state donated; `ynn_dots`: see `aelab.compiler`."""
    return compiler.jit(train_step_fn(graphdef, task, compute_dtype, log_every, num_steps),
                        donate_argnums=0, ynn_dots=ynn_dots)


def make_indexed_train_steps(graphdef: nnx.GraphDef, task, max_steps: int, compute_dtype: str = "float32",
                             ynn_dots: bool = False, log_every: int = 1, num_steps: int = 0) -> Callable:
    """(state, data, indices (B, max_steps), count, rng) -> (state, metrics (max_steps,)): the
    train step run `count` times in one dispatch (a loop on the device), step j on the batch
    `data[indices[:, j]]`, gathered on the device from a training split that stays there.

    The host sends only row indices, so on a CPU it copies no images while the device computes,
    and Python's per-dispatch work is paid once per `count` steps. One compiled program serves
    every count <= max_steps; metrics of steps past `count` are zeros. Each step's key is still
    fold_in(rng, step), so how steps are grouped changes no number.
    """
    step = train_step_fn(graphdef, task, compute_dtype, log_every, num_steps)

    @compiler.jit(donate_argnums=0, ynn_dots=ynn_dots)
    def indexed_steps(state, data, indices, count, rng):
        def one(j, state):
            return step(state, jax.tree.map(lambda array: array[indices[:, j]], data), rng)

        if max_steps == 1:  # no loop (see `steps_per_dispatch`)
            state, metrics = one(0, state)
            return state, jax.tree.map(lambda m: m[None], metrics)
        shapes = jax.eval_shape(one, 0, state)[1]
        history = jax.tree.map(lambda m: jnp.zeros((max_steps, *m.shape), m.dtype), shapes)

        def body(j, carry):
            state, history = carry
            state, metrics = one(j, state)
            return state, jax.tree.map(lambda h, m: h.at[j].set(m), history, metrics)

        return jax.lax.fori_loop(0, count, body, (state, history))

    return indexed_steps


def train_ynn_dots(requested: bool | None, model: nnx.Module) -> bool:
    """Whether the model's train step uses YNNPACK matmuls on CPU (`compiler.ynn_dots_for`)."""
    return compiler.ynn_dots_for(requested, "train", compiler.has_convolutions(model))


def train_step_options(t: ml_collections.ConfigDict, model: nnx.Module) -> dict:
    """The keyword arguments the trainer's loop compiles its train step with (`train` config `t`)."""
    return {"compute_dtype": t.compute_dtype, "ynn_dots": train_ynn_dots(t.cpu_ynn_dots, model),
            "log_every": t.log_every, "num_steps": t.num_steps}


def steps_per_dispatch(requested: int, model: nnx.Module) -> int:
    """`train.steps_per_dispatch`, but 1 on CPU for a model with convolutions: XLA:CPU runs a
    convolution's gradient inside a device loop some 60x slower than outside it (a 3x3
    stride-2 convolution's gradient at batch 128: 3 ms alone, 198 ms an iteration in a
    loop), so there every step is its own dispatch."""
    return 1 if compiler.has_convolutions(model) and jax.default_backend() == "cpu" else requested


def device_batches(run: Run, width: int) -> Callable[[int, int], tuple] | None:
    """`(step, count) -> (data, indices (B, width))` for `make_indexed_train_steps` when the training
    arrays fit in `train.device_data_mb` and batches are not bucketed (bucketing cuts them to
    lengths on the host); None otherwise. Column j < count holds the rows of `run.batches(step + j)`."""
    arrays, budget = run.batches.arrays, run.config.train.device_data_mb
    if run.batches.bucket_of is not None or sum(a.nbytes for a in arrays.values()) > budget * 2 ** 20:
        return None
    data = parallel.put_replicated(arrays, run.mesh)

    def batches(step: int, count: int) -> tuple:
        columns = [run.batches.indices(step + j) for j in range(count)]
        columns += columns[-1:] * (width - count)  # a fixed shape; the device runs only `count`
        return data, parallel.put_batch({"index": np.stack(columns, axis=1)}, run.mesh)["index"]

    return batches


def make_eval_step(graphdef: nnx.GraphDef, task, final: bool = False, ynn_dots: bool = False) -> Callable:
    """(state, batch, rng) -> masked sums over the batch of the task's per-example metrics, plus `count`.

    `final` asks the task for its expensive metrics too (e.g. a VAE's importance-sampled NLL).
    """
    @compiler.jit(ynn_dots=ynn_dots)
    def eval_step(state, batch, rng):
        model, _ = nnx.merge(graphdef, state)
        per_example = task.eval_metrics(model, batch, rng, final)
        mask = batch["mask"]
        sums = {k: jnp.tensordot(mask, v, axes=1) for k, v in per_example.items()}
        sums["count"] = jnp.sum(mask)
        return sums

    return eval_step


def evaluate_with_outputs(run: Run, eval_step, state, split_name: str, final: bool, step: int,
                          workdir: str, is_chief: bool) -> dict[str, float]:
    """`evaluate_split`, plus the task's metrics of decoded outputs (BLEU) where it has them;
    the chief writes those outputs to DIR/samples/<split>_<step>.txt."""
    split = run.dataset.split(split_name)
    results = evaluate_split(eval_step, state, split, run.config.train.eval_batch_size,
                             run.eval_key, run.task, run.mesh)
    if hasattr(run.task, "generation_metrics"):
        model, _ = nnx.merge(run.graphdef, state)
        samples = os.path.join(workdir, wd.SAMPLES, f"{split_name}_{step}.txt") if is_chief else None
        results.update(run.task.generation_metrics(model, split, final, samples))
    return results


def evaluate_split(eval_step, state, split: data.Split, batch_size: int, rng, task,
                   mesh: jax.sharding.Mesh | None = None) -> dict[str, float]:
    """Means over every example of `split` (padding masked out), summarized by the task.

    Batch i draws its randomness from fold_in(rng, i): the same at every evaluation.
    On a mesh, batches are sharded along its data axis.
    """
    totals = None
    for i, batch in enumerate(data.eval_batches(split, batch_size)):
        if mesh is not None:
            batch = parallel.put_batch(batch, mesh)
        sums = eval_step(state, batch, jax.random.fold_in(rng, i))
        totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    totals = jax.device_get(totals)
    count = totals.pop("count")
    return task.summarize({k: np.asarray(v) / count for k, v in totals.items()})


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
    changes = wd.check_resume(workdir, run.config.to_dict(), saved) if is_chief else []
    step, state = ckpt.restore_latest(run.state)
    summary_path = os.path.join(workdir, wd.SUMMARY)
    if os.path.exists(summary_path):  # already complete (or stopped early): nothing to redo
        done = wd.read_json(summary_path)
        if step >= run.config.train.num_steps or (done.get("early_stopped") and done["step"] == step):
            return done
    if step > run.config.train.num_steps:
        raise UsageError(f"train.num_steps={run.config.train.num_steps} is below the step this workdir's "
                         f"checkpoint has reached ({step}); raise it to at least {step}, or use a new --workdir")
    if is_chief:
        wd.remove_stale_temporaries(workdir)
        wd.record_start(workdir, run.config.to_dict(), step, changes)
        if hasattr(run.task, "save_assets"):
            run.task.save_assets(workdir)
    try:
        return _loop(run, state, step, ckpt, workdir, should_stop, is_chief, started)
    except NonFiniteError as e:
        e.last_checkpoint = ckpt.latest_step()
        raise


def _loop(run: Run, state, step: int, ckpt: checkpoint.Checkpointer, workdir: str,
          should_stop, is_chief: bool, started: float) -> dict[str, Any]:
    t = run.config.train
    first_step_s = None  # from the call to its first step's result: data, build, restore, compile
    writer = MetricWriter(workdir, step, t.num_steps, t.tensorboard, enabled=is_chief)
    model = nnx.merge(run.graphdef, run.state)[0]
    per_dispatch = steps_per_dispatch(t.steps_per_dispatch, model)
    options = train_step_options(t, model)
    on_device = device_batches(run, per_dispatch)
    if on_device:
        indexed_steps = make_indexed_train_steps(run.graphdef, run.task, per_dispatch, **options)
        train_steps = lambda state, step, count, key: indexed_steps(  # noqa: E731
            state, *on_device(step, count), count, key)
    else:
        host_step = make_train_step(run.graphdef, run.task, **options)
        train_steps = lambda state, step, count, key: host_step(  # noqa: E731
            state, parallel.put_batch(run.batches(step), run.mesh), key)
    eval_step = make_eval_step(run.graphdef, run.task, ynn_dots=compiler.ynn_dots_for(t.cpu_ynn_dots, "evaluate"))
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
            stopping = step < t.num_steps and (
                (should_stop is not None and should_stop(step))
                or (multihost and ckpt.manager.reached_preemption(step)))
            if step % t.checkpoint_every == 0 or step == t.num_steps or stopping or early_stop:
                window.check()  # never checkpoint a diverged state
                ckpt.save(step, state, run.config.to_dict())
            if stopping:
                return {"step": step, "stopped": True}
        return finish(run, state, step, workdir, writer, is_chief, eval_step, early_stop, first_step_s)
    finally:
        bar.close()
        writer.close()


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
           time_to_first_step_s: float | None = None) -> dict[str, Any]:
    """Final evaluation on val (with the loop's `eval_step`, already compiled) and test ("eval",
    with the task's expensive final metrics), baselines, figures and summary.json."""
    final_step = make_eval_step(run.graphdef, run.task, True,
                                compiler.ynn_dots_for(run.config.train.cpu_ynn_dots, "evaluate"))
    results = {  # the expensive final metrics (e.g. IWAE NLL, beam search) on the test split only
        "val": evaluate_with_outputs(run, eval_step, state, "val", False, step, workdir, is_chief),
        "eval": evaluate_with_outputs(run, final_step, state, "test", True, step, workdir, is_chief)}
    summary = {"step": step, "eval": results["eval"], "val": results["val"],
               "early_stopped": early_stop, "time_to_first_step_s": time_to_first_step_s,
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
    """(run, model, step) of a workdir's latest checkpoint, rebuilt from its config.json.

    Read-only: nothing in the workdir is created, cleaned, moved or locked, so this works
    while a trainer is still writing checkpoints there (an unreadable checkpoint is reported
    and an older one used). With `task`, a run of any other task is refused (naming `use`,
    the command) before anything is loaded. The name is compared, not the class:
    captioning subclasses translation.
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

"""The compiled steps: model creation, the pure train step (one step a call, or several in one
dispatch over a split on the device), and the evaluation step.

Each is built from a graphdef and a task, and compiled by the task's compile
policy (aelab.compiler) for the program it is: the trainer, `aelab bench` and
the speed experiments all compile the same functions.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from aelab import optim
from aelab.compiler import CompilePolicy
from aelab.tasks import Task

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def init_model_and_optimizer(task: Task, example_shape, tx: optax.GradientTransformation,
                             key: jax.Array) -> tuple[nnx.Module, nnx.Optimizer]:
    """The task's model, parameters drawn from `key`, and its optimizer, created in one compiled
    program (the same bits as eagerly, where every initializer compiled tiny programs that no
    cache keeps)."""
    def create(k):
        model = task.build_model(example_shape, nnx.Rngs(params=k))
        return model, nnx.Optimizer(model, tx, wrt=nnx.Param)

    return nnx.jit(create)(key)


def model_and_optimizer(config: ml_collections.ConfigDict, task: Task, example_shape,
                        key: jax.Array) -> tuple[nnx.Module, nnx.Optimizer]:
    """The task's model for examples of `example_shape`, parameters drawn from `key`, and the
    optimizer of `config.optimizer` over the parameters `train.trainable` matches (what a
    checkpoint holds the state of)."""
    tx = optim.make_optimizer(config.optimizer, config.train.num_steps)
    if config.train.skip_nonfinite:  # updates with non-finite gradients are dropped, and counted
        tx = optax.apply_if_finite(tx, config.train.max_consecutive_nonfinite)
    if config.train.trainable:  # the others stay as they are: frozen
        tx = optim.trainable_only(tx, config.train.trainable)
    return init_model_and_optimizer(task, example_shape, tx, key)


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


def train_step_options(train: ml_collections.ConfigDict) -> dict:
    """The keyword arguments the trainer compiles its train step with (`config.train`)."""
    return {"compute_dtype": train.compute_dtype, "log_every": train.log_every, "num_steps": train.num_steps}


def train_step_fn(graphdef: nnx.GraphDef, task: Task, policy: CompilePolicy, compute_dtype: str = "float32",
                  log_every: int = 1, num_steps: int = 0) -> Callable:
    """The pure (state, batch, rng) -> (state, metrics) that `make_train_step` compiles.

    The step's key is `fold_in(rng, step)`, so randomness depends only on the step.
    `grad_norm` is computed only by the steps that end a log window (step count a multiple
    of `log_every`, or `num_steps`); the others report 0 for it (the loop logs the window's
    last value): computing it at every step would cost every step an extra pass.
    """
    loss_fn = in_compute_dtype(task.loss_fn, COMPUTE_DTYPES[compute_dtype])
    ordered = optim.after_whole_backward if policy.order_updates else (lambda grads: grads)

    def train_step(state, batch, rng):
        model, optimizer = nnx.merge(graphdef, state)
        step = optimizer.step[...]
        (_, metrics), grads = nnx.value_and_grad(loss_fn, has_aux=True)(
            model, batch, jax.random.fold_in(rng, step), step)
        optimizer.update(model, ordered(grads))
        logged = ((step + 1) % log_every == 0) | (step + 1 == num_steps)
        metrics["grad_norm"] = jax.lax.cond(logged, optim.global_norm,
                                            lambda _: jnp.zeros((), jnp.float32), grads)
        return nnx.state((model, optimizer)), metrics

    return train_step


def make_train_step(graphdef: nnx.GraphDef, task: Task, policy: CompilePolicy, **options) -> Callable:
    """`train_step_fn`, compiled once as a "train" program of `policy`, state donated."""
    return policy.jit(train_step_fn(graphdef, task, policy, **options), program="train", donate_argnums=0)


def make_indexed_train_steps(graphdef: nnx.GraphDef, task: Task, policy: CompilePolicy, max_steps: int,
                             **options) -> Callable:
    """(state, data, indices (B, max_steps), count, rng) -> (state, metrics (max_steps,)): the
    train step run `count` times in one dispatch (a loop on the device), step j on the batch
    `data[indices[:, j]]`, gathered on the device from a training split that stays there.

    The host sends only row indices, so on a CPU it copies no images while the device computes,
    and Python's per-dispatch work is paid once per `count` steps. One compiled program serves
    every count <= max_steps; metrics of steps past `count` are zeros. Each step's key is still
    fold_in(rng, step), so how steps are grouped changes no number.
    """
    step = train_step_fn(graphdef, task, policy, **options)

    @policy.jit(program="train", donate_argnums=0)
    def indexed_steps(state, data, indices, count, rng):
        def one(j, state):
            return step(state, jax.tree.map(lambda array: array[indices[:, j]], data), rng)

        if max_steps == 1:  # no loop (CompilePolicy.steps_per_dispatch)
            state, metrics = one(0, state)
            return state, jax.tree.map(lambda m: jnp.asarray(m)[None], metrics)  # (a metric may be a Python float)
        shapes = jax.eval_shape(one, 0, state)[1]
        history = jax.tree.map(lambda m: jnp.zeros((max_steps, *m.shape), m.dtype), shapes)

        def body(j, carry):
            state, history = carry
            state, metrics = one(j, state)
            return state, jax.tree.map(lambda h, m: h.at[j].set(m), history, metrics)

        return jax.lax.fori_loop(0, count, body, (state, history))

    return indexed_steps


def make_eval_step(graphdef: nnx.GraphDef, task: Task, policy: CompilePolicy, final: bool = False) -> Callable:
    """(state, batch, rng) -> masked sums over the batch of the task's per-example metrics, plus `count`.

    A metric the task gives as one value for the batch (a scalar: a batch-level metric, computed
    over the batch's real examples) counts once per real example, so that the split's figure is
    the batches' mean weighted by their examples. `final` asks the task for its expensive
    metrics too (e.g. a VAE's importance-sampled NLL).
    """
    @policy.jit(program="evaluate")
    def eval_step(state, batch, rng):
        model, _ = nnx.merge(graphdef, state)
        metrics = task.eval_metrics(model, batch, rng, final)
        mask = batch["mask"]
        count = jnp.sum(mask)
        sums = {k: v * count if jnp.ndim(v) == 0 else jnp.tensordot(mask, v, axes=1) for k, v in metrics.items()}
        sums["count"] = count
        return sums

    return eval_step

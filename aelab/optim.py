"""The optax optimizer and learning-rate schedule of `config.optimizer`, and the freezing of the
parameters `train.trainable` leaves out."""

from __future__ import annotations

import re
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax


def learning_rate_schedule(opt: ml_collections.ConfigDict, num_steps: int) -> optax.Schedule:
    if opt.schedule == "constant":
        if opt.warmup_steps:
            return optax.linear_schedule(0.0, opt.learning_rate, opt.warmup_steps)
        return optax.constant_schedule(opt.learning_rate)
    warmup = opt.warmup_steps if opt.schedule == "warmup_cosine" else 0
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0 if warmup else opt.learning_rate, peak_value=opt.learning_rate,
        warmup_steps=warmup, decay_steps=max(num_steps, warmup + 1),
        end_value=opt.learning_rate * opt.end_lr_factor)


def make_optimizer(opt: ml_collections.ConfigDict, num_steps: int) -> optax.GradientTransformation:
    """adam | adamw | sgd on the configured schedule, with optional global-norm clipping."""
    lr = learning_rate_schedule(opt, num_steps)
    if opt.name == "adam":
        tx = optax.adam(lr)
    elif opt.name == "adamw":
        tx = optax.adamw(lr, weight_decay=opt.weight_decay)
    else:
        tx = optax.sgd(lr, momentum=opt.momentum or None)
    if opt.grad_clip_norm:
        tx = optax.chain(optax.clip_by_global_norm(opt.grad_clip_norm), tx)
    return tx


def global_norm(tree) -> jax.Array:
    """The L2 norm of all of a pytree's leaves together (optax.tree.norm's value).

    Each leaf's sum of squares is one dot product. With optax.tree.norm, XLA shares the
    squares with Adam's second-moment update and writes them out as an array that the
    norm reads back: an extra pass over the gradients (experiments/speed/README.md).
    """
    return jnp.sqrt(sum(jnp.vdot(leaf, leaf) for leaf in jax.tree.leaves(tree)))


def after_whole_backward(grads):
    """`grads` with 0 x (one element of every matrix gradient, summed) added to each matrix
    leaf: the same numbers, but each dense kernel's update now waits for the whole backward
    pass. (A non-finite gradient then spreads to every matrix leaf's update; such a step is
    lost either way, and `optax.apply_if_finite` rejects it as a whole.)

    Why: a donated kernel is updated in place, and the backward pass reads it again
    (dx = dy W^T) with no data dependency between that read and the update, so XLA copies
    every such kernel at the start of each step; XLA:CPU drops `lax.optimization_barrier`,
    which would order them. With the dependency the copies go. Only matrices are ordered
    (convolution kernels held back cost more than their copies). The compile policy applies
    it on CPU only; figures: experiments/speed/README.md.
    """
    matrices = [leaf for leaf in jax.tree.leaves(grads) if leaf.ndim == 2 and leaf.size]
    if not matrices:
        return grads
    zero = sum(leaf[0, 0].astype(jnp.float32) for leaf in matrices) * 0.0
    return jax.tree.map(lambda leaf: leaf + zero.astype(leaf.dtype) if leaf.ndim == 2 else leaf, grads)


def param_path(keys) -> str:
    """A parameter's path as "encoder/mlp/layers/0/kernel": its keys in the model's state."""
    parts = []
    for key in keys:
        if isinstance(key, jax.tree_util.DictKey):
            parts.append(str(key.key))
        elif isinstance(key, jax.tree_util.SequenceKey):
            parts.append(str(key.idx))
    return "/".join(parts)


def param_paths(params) -> dict[str, Any]:
    """{path: array} of a model's parameters (`nnx.state(model, nnx.Param)`)."""
    return {param_path(keys): leaf for keys, leaf in jax.tree_util.tree_flatten_with_path(params)[0]}


def trainable_only(tx: optax.GradientTransformation, pattern: str) -> optax.GradientTransformation:
    """`tx` for the parameters whose path matches the regular expression `pattern` (re.search),
    zero updates for the others: optax's partition, so the frozen ones keep no optimizer state."""
    regex = re.compile(pattern)

    def labels(params):
        return jax.tree_util.tree_map_with_path(
            lambda keys, _: "train" if regex.search(param_path(keys)) else "freeze", params)

    return optax.multi_transform({"train": tx, "freeze": optax.set_to_zero()}, labels)

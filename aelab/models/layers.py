"""Activations by name and the dense layer, shared by every model."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from aelab.errors import choose

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "gelu": jax.nn.gelu,
    "elu": jax.nn.elu,
    "silu": jax.nn.silu,
    "leaky_relu": jax.nn.leaky_relu,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
}


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
    choose("activation", name, ACTIVATIONS)
    return ACTIVATIONS[name]


def on_rows(f: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
    """`f` of x's last axis, applied with every leading axis flattened into one.

    A matmul over (B, T, D) inputs has a kernel gradient that contracts two axes; XLA:CPU
    computes it by transposing the whole output gradient and running a slow matmul on the
    copy, while over (B * T, D) rows it is one plain matmul. A reshape costs nothing."""
    if x.ndim <= 2:
        return f(x)
    y = f(x.reshape(-1, x.shape[-1]))
    return y.reshape(*x.shape[:-1], y.shape[-1])


class Dense(nnx.Linear):
    """`nnx.Linear` (the same parameters, so the same checkpoints) over any number of leading
    axes, computed as one matmul over rows (`on_rows`)."""

    def __call__(self, inputs: jax.Array, out_sharding=None) -> jax.Array:
        return on_rows(lambda rows: nnx.Linear.__call__(self, rows, out_sharding), inputs)

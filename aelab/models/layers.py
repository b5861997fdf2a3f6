"""Activations by name, shared by every model."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

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

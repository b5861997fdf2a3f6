"""Activations by name and the dense and group-norm layers, shared by every model."""

from __future__ import annotations

import math
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


class GroupNorm(nnx.GroupNorm):
    """`nnx.GroupNorm` (the same parameters, so the same checkpoints) over channels-last
    inputs, with its statistics summed per channel over the spatial axes first, then per group.

    flax reduces a (B, ..., G, C/G) view of the input straight to (B, G), which XLA:CPU
    computes with strided reads element by element; a sum over the spatial axes that keeps
    the channel axis is a vectorized reduction, and the per-group sums are over a tiny
    (B, C) array. The normalization is then one scale and shift per example and channel.
    The variance is E[x^2] - E[x]^2, as flax's default (`use_fast_variance`)."""

    def __call__(self, x: jax.Array, *, mask: jax.Array | None = None) -> jax.Array:
        if mask is not None or self.reduction_axes is not None or self.axis_name is not None \
                or not self.use_fast_variance or x.ndim < 3:
            return super().__call__(x, mask=mask)
        dtype = jnp.promote_types(self.dtype or x.dtype, jnp.float32)  # statistics in float32 at least
        spatial = tuple(range(1, x.ndim - 1))
        count = math.prod(x.shape[1:-1]) * self.group_size
        xs = x.astype(dtype)

        def per_group(sums: jax.Array) -> jax.Array:  # (B, C) -> (B, C): each channel's group mean
            grouped = sums.reshape(sums.shape[0], self.num_groups, self.group_size).sum(-1) / count
            return jnp.repeat(grouped, self.group_size, axis=1)

        mean = per_group(xs.sum(spatial))
        var = jnp.maximum(per_group(jnp.square(xs).sum(spatial)) - jnp.square(mean), 0.0)
        scale = jax.lax.rsqrt(var + self.epsilon)
        if self.scale is not None:
            scale = scale * self.scale[...]
        shift = -mean * scale
        if self.bias is not None:
            shift = shift + self.bias[...]
        at = (slice(None),) + (None,) * len(spatial)  # (B, C) broadcast over the spatial axes
        out_dtype = self.dtype or jnp.result_type(x, *(p[...] for p in (self.scale, self.bias) if p is not None))
        return (xs * scale[at] + shift[at]).astype(out_dtype)

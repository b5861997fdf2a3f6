"""Fully connected encoder and decoder (the decoder mirrors the encoder's widths)."""

from __future__ import annotations

import math
from typing import Sequence

import jax
from flax import nnx

from aelab.models import layers


class MLP(nnx.Module):
    """Dense layers with an activation between them; the last layer is linear."""

    def __init__(self, sizes: Sequence[int], act: str, *, rngs: nnx.Rngs):
        self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])
        self.act = layers.activation(act)

    def __call__(self, x: jax.Array) -> jax.Array:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = self.act(x)
        return x


class MLPEncoder(nnx.Module):
    """Image (B, H, W, C) -> code (B, latent_dim)."""

    def __init__(self, image_shape: Sequence[int], latent_dim: int, hidden: Sequence[int],
                 activation: str, *, rngs: nnx.Rngs):
        self.mlp = MLP([math.prod(image_shape), *hidden, latent_dim], activation, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.mlp(x.reshape(x.shape[0], -1))


class MLPDecoder(nnx.Module):
    """Code (B, latent_dim) -> per-pixel outputs (B, H, W, C), before any output link."""

    def __init__(self, image_shape: Sequence[int], latent_dim: int, hidden: Sequence[int],
                 activation: str, *, rngs: nnx.Rngs):
        self.image_shape = tuple(image_shape)
        self.mlp = MLP([latent_dim, *reversed(hidden), math.prod(image_shape)], activation, rngs=rngs)

    def __call__(self, z: jax.Array) -> jax.Array:
        return self.mlp(z).reshape(z.shape[0], *self.image_shape)

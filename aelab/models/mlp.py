"""Fully connected encoder and decoder (the decoder mirrors the encoder's widths)."""

from __future__ import annotations

import math
from typing import Sequence

import jax
from flax import nnx

from aelab.errors import UsageError, choose
from aelab.models import layers
from aelab.models.architectures import AutoencoderSpec
from aelab.registry import register_architecture


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


def check(cfg, example_shape) -> None:
    if any(not isinstance(v, int) or v <= 0 for v in cfg.hidden):
        raise UsageError(f"model.mlp.hidden={tuple(cfg.hidden)} must hold positive integers")
    choose("model.mlp.activation", cfg.activation, layers.ACTIVATIONS)


@register_architecture("mlp", family="autoencoder", check=check, config={
    "hidden": (256, 128),  # encoder widths, mirrored in the decoder
    "activation": "relu",
})
def build(cfg, spec: AutoencoderSpec) -> tuple[MLPEncoder, MLPDecoder]:
    kwargs = dict(hidden=tuple(cfg.hidden), activation=cfg.activation, rngs=spec.rngs)
    return (MLPEncoder(image_shape=spec.example_shape, latent_dim=spec.code_size, **kwargs),
            MLPDecoder(image_shape=spec.output_shape, latent_dim=spec.latent_dim, **kwargs))

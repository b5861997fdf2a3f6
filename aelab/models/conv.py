"""Convolutional encoder and decoder.

The encoder is strided convolutions then a Dense layer to the code; the
decoder mirrors it: a Dense projection to the encoder's last feature map, then
transposed convolutions (or nearest-neighbour upsampling + convolution), and a
crop back to the input size when strides do not divide it.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
from flax import nnx

from aelab.errors import choose
from aelab.models import layers

UPSAMPLE_MODES = ("transpose", "resize")


def feature_shape(image_shape: Sequence[int], channels: Sequence[int],
                  strides: Sequence[int]) -> tuple[int, int, int]:
    """(H, W, C) of the encoder's last feature map under 'SAME' padding."""
    h, w = image_shape[0], image_shape[1]
    for s in strides:
        h, w = -(-h // s), -(-w // s)
    return h, w, channels[-1]


class ConvEncoder(nnx.Module):
    def __init__(self, image_shape: Sequence[int], latent_dim: int, channels: Sequence[int],
                 strides: Sequence[int], kernel_size: int, activation: str, *, rngs: nnx.Rngs):
        in_channels = [image_shape[-1], *channels[:-1]]
        k = (kernel_size, kernel_size)
        self.convs = nnx.List([
            nnx.Conv(a, b, k, strides=s, padding="SAME", rngs=rngs)
            for a, b, s in zip(in_channels, channels, strides)])
        self.act = layers.activation(activation)
        self.dense = nnx.Linear(math.prod(feature_shape(image_shape, channels, strides)),
                                latent_dim, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        for conv in self.convs:
            x = self.act(conv(x))
        return self.dense(x.reshape(x.shape[0], -1))


class ConvDecoder(nnx.Module):
    def __init__(self, image_shape: Sequence[int], latent_dim: int, channels: Sequence[int],
                 strides: Sequence[int], kernel_size: int, activation: str, upsample: str,
                 *, rngs: nnx.Rngs):
        choose("upsample mode", upsample, UPSAMPLE_MODES)
        self.image_shape = tuple(image_shape)
        self.start_shape = feature_shape(image_shape, channels, strides)
        self.dense = nnx.Linear(latent_dim, math.prod(self.start_shape), rngs=rngs)
        out_channels = [*reversed(channels[:-1]), image_shape[-1]]
        k = (kernel_size, kernel_size)
        if upsample == "transpose":
            self.ups = nnx.List([
                nnx.ConvTranspose(a, b, k, strides=s, padding="SAME", rngs=rngs)
                for a, b, s in zip(reversed(channels), out_channels, reversed(strides))])
        else:
            self.ups = nnx.List([
                nnx.Conv(a, b, k, padding="SAME", rngs=rngs)
                for a, b in zip(reversed(channels), out_channels)])
        self.strides = tuple(reversed(strides))
        self.upsample = upsample
        self.act = layers.activation(activation)

    def __call__(self, z: jax.Array) -> jax.Array:
        x = self.dense(z).reshape(z.shape[0], *self.start_shape)
        for i, (layer, s) in enumerate(zip(self.ups, self.strides)):
            if self.upsample == "resize" and s > 1:
                b, h, w, c = x.shape
                x = jax.image.resize(x, (b, h * s, w * s, c), method="nearest")
            x = layer(x)
            if i < len(self.ups) - 1:
                x = self.act(x)
        h, w = self.image_shape[:2]
        return x[:, :h, :w, :]


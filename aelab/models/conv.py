"""Convolutional encoder and decoder.

The encoder is strided convolutions then a Dense layer to the code; the
decoder mirrors it: a Dense projection to the encoder's last feature map, then
transposed convolutions (or nearest-neighbour upsampling + convolution), and a
crop back to the input size when strides do not divide it.

Where the compile policy asks for it (CPU, whose transposed-convolution
weight gradient is slow), a 3x3 stride-2 transposed convolution with 8 or more
output channels runs as a stride-1 2x2 convolution and depth-to-space: the
same numbers from the same parameters, so checkpoints do not depend on which
runs (figures: experiments/speed/README.md).
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from aelab.errors import UsageError, choose
from aelab.models import layers
from aelab.models.architectures import AutoencoderSpec
from aelab.registry import register_architecture

UPSAMPLE_MODES = ("transpose", "resize")

# For a stride-2, 3-tap transposed convolution with 'SAME' padding (lax's convention), output
# 2m + parity reads inputs m - 1 and m through these taps of the kernel (None: no tap).
_SUBPIXEL_TAPS = {0: (0, 2), 1: (None, 1)}


def subpixel_kernel(kernel: jax.Array) -> jax.Array:
    """A (3, 3, Cin, Cout) stride-2 transposed-convolution kernel as the (2, 2, Cin, 4 * Cout)
    kernel of a stride-1 convolution whose output, depth-to-space, is the same thing."""
    zero = jnp.zeros_like(kernel[0, 0])
    rows = []
    for a in (0, 1):  # kernel row: input row m - 1 + a
        cols = []
        for b in (0, 1):  # kernel column: input column n - 1 + b
            outs = []
            for p in (0, 1):  # output row parity
                for q in (0, 1):  # output column parity
                    r, c = _SUBPIXEL_TAPS[p][a], _SUBPIXEL_TAPS[q][b]
                    outs.append(zero if r is None or c is None else kernel[r, c])
            cols.append(jnp.concatenate(outs, axis=-1))  # (Cin, 4 * Cout), ordered (p, q, Cout)
        rows.append(jnp.stack(cols))
    return jnp.stack(rows)


def depth_to_space(y: jax.Array) -> jax.Array:
    """(B, H, W, 4 * C), channels ordered (row parity, column parity, C) -> (B, 2H, 2W, C)."""
    b, h, w, c4 = y.shape
    return y.reshape(b, h, w, 2, 2, c4 // 4).transpose(0, 1, 3, 2, 4, 5).reshape(b, 2 * h, 2 * w, c4 // 4)


def conv_transpose_subpixel(layer: nnx.ConvTranspose, x: jax.Array) -> jax.Array:
    """`layer(x)` for a 3x3, stride-2, 'SAME' transposed convolution, computed as a stride-1 2x2
    convolution and depth-to-space (sub-pixel upsampling, Shi et al. 2016): the same numbers
    from the same parameters."""
    y = depth_to_space(jax.lax.conv_general_dilated(jnp.pad(x, ((0, 0), (1, 0), (1, 0), (0, 0))),
                                                    subpixel_kernel(layer.kernel[...]), (1, 1), "VALID",
                                                    dimension_numbers=("NHWC", "HWIO", "NHWC")))
    return y + layer.bias[...] if layer.bias is not None else y


# Nearest-neighbour x2, then a 3-tap 'SAME' convolution: output 2m + parity reads inputs m - 1,
# m, m + 1 (rows) through these sums of the kernel's taps (columns).
_RESIZE_TAPS = np.array([[[1, 0, 0], [0, 1, 1], [0, 0, 0]],  # parity 0
                         [[0, 0, 0], [1, 1, 0], [0, 0, 1]]],  # parity 1
                        np.float32)


def resize_conv_subpixel(layer: nnx.Conv, x: jax.Array) -> jax.Array:
    """`layer(nearest x2 of x)` for a 3x3, stride-1, 'SAME' convolution, computed as a 3x3
    convolution of x itself into 4 * Cout channels and depth-to-space: the same numbers from the
    same parameters, without the upsampled copy or the convolutions at twice the resolution."""
    kernel = layer.kernel[...]
    cin, cout = kernel.shape[2:]
    kernel = jnp.einsum("pst,qru,tuio->sripqo", _RESIZE_TAPS, _RESIZE_TAPS, kernel).reshape(3, 3, cin, 4 * cout)
    y = depth_to_space(jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME",
                                                    dimension_numbers=("NHWC", "HWIO", "NHWC")))
    return y + layer.bias[...] if layer.bias is not None else y


def nearest_x2(x: jax.Array) -> jax.Array:
    """(B, H, W, C) -> (B, 2H, 2W, C), each pixel repeated 2x2."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def subpixel_applies(layer: nnx.ConvTranspose | nnx.Conv, stride: int) -> bool:
    """Whether a sub-pixel form covers this upsampling layer (3x3, stride 2, or a 3x3 convolution
    after nearest x2) and pays (8 or more output channels: into one channel the native transposed
    op's gradient is the faster one on CPU)."""
    return stride == 2 and tuple(layer.kernel_size) == (3, 3) and layer.out_features >= 8


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
                 subpixel: bool = False, *, rngs: nnx.Rngs):
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
        self.subpixel = subpixel  # the compile policy's choice (aelab.compiler); same numbers either way
        self.act = layers.activation(activation)

    def __call__(self, z: jax.Array) -> jax.Array:
        x = self.dense(z).reshape(z.shape[0], *self.start_shape)
        for i, (layer, s) in enumerate(zip(self.ups, self.strides)):
            fast = self.subpixel and subpixel_applies(layer, s)
            if self.upsample == "transpose":
                x = conv_transpose_subpixel(layer, x) if fast else layer(x)
            elif fast:
                x = resize_conv_subpixel(layer, x)
            else:
                if s > 1:
                    b, h, w, c = x.shape
                    x = jax.image.resize(x, (b, h * s, w * s, c), method="nearest")
                x = layer(x)
            if i < len(self.ups) - 1:
                x = self.act(x)
        h, w = self.image_shape[:2]
        return x[:, :h, :w, :]



def positive_ints(key: str, values) -> None:
    """Raises a UsageError unless `values` is a non-empty sequence of positive integers."""
    if not values or any(not isinstance(v, int) or v <= 0 for v in values):
        raise UsageError(f"{key}={tuple(values)} must hold positive integers (at least one)")


def check(cfg, example_shape) -> None:
    positive_ints("model.conv.channels", cfg.channels)
    positive_ints("model.conv.strides", cfg.strides)
    if len(cfg.channels) != len(cfg.strides):
        raise UsageError(f"model.conv.channels={tuple(cfg.channels)} and model.conv.strides={tuple(cfg.strides)} "
                         "must be of the same length (one stride per conv layer)")
    if cfg.kernel_size <= 0:
        raise UsageError(f"model.conv.kernel_size={cfg.kernel_size} must be > 0")
    choose("model.conv.upsample", cfg.upsample, UPSAMPLE_MODES)
    choose("model.conv.activation", cfg.activation, layers.ACTIVATIONS)


@register_architecture("conv", family="autoencoder", check=check, config={
    "channels": (32, 64),  # channels per layer
    "strides": (2, 2),  # one stride per layer
    "kernel_size": 3,
    "activation": "relu",
    "upsample": "transpose",  # the decoder: transpose | resize (nearest, then a conv)
})
def build(cfg, spec: AutoencoderSpec) -> tuple[ConvEncoder, ConvDecoder]:
    kwargs = dict(channels=tuple(cfg.channels), strides=tuple(cfg.strides), kernel_size=cfg.kernel_size,
                  activation=cfg.activation, rngs=spec.rngs)
    return (ConvEncoder(image_shape=spec.example_shape, latent_dim=spec.code_size, **kwargs),
            ConvDecoder(image_shape=spec.output_shape, latent_dim=spec.latent_dim, upsample=cfg.upsample,
                        subpixel=spec.subpixel, **kwargs))

"""Residual convolutional encoder and decoder for colour images (`model.arch=resnet`).

A stage is `model.blocks` residual blocks x + Conv3x3(SiLU(GN(Conv3x3(SiLU(GN(x)))))) at one
resolution, GroupNorm in `model.groups` groups; stages are joined by a stride-2 3x3
convolution (encoder) and by nearest-neighbour x2 upsampling and a 3x3 convolution
(`model.upsample=resize`) or a stride-2 transposed convolution (`transpose`) (decoder).
With `model.resnet.channels=(32, 64, 128)` and one block a stage this is the W4 `resnet_vae` of
../shared/bench/torch_ref.py, layer for layer.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
from flax import nnx

from aelab.errors import UsageError, choose
from aelab.models.architectures import AutoencoderSpec
from aelab.models.conv import (conv_transpose_subpixel, nearest_x2, positive_ints, resize_conv_subpixel,
                               subpixel_applies)
from aelab.models.layers import GroupNorm
from aelab.registry import register_architecture

UPSAMPLE_MODES = ("resize", "transpose")


class ResBlock(nnx.Module):
    def __init__(self, channels: int, groups: int, *, rngs: nnx.Rngs):
        self.norm1 = GroupNorm(channels, num_groups=groups, epsilon=1e-5, rngs=rngs)
        self.conv1 = nnx.Conv(channels, channels, (3, 3), padding="SAME", rngs=rngs)
        self.norm2 = GroupNorm(channels, num_groups=groups, epsilon=1e-5, rngs=rngs)
        self.conv2 = nnx.Conv(channels, channels, (3, 3), padding="SAME", rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return x + self.conv2(jax.nn.silu(self.norm2(self.conv1(jax.nn.silu(self.norm1(x))))))


def feature_shape(image_shape: Sequence[int], channels: Sequence[int]) -> tuple[int, int, int]:
    """The encoder's last feature map: halved (rounding up) once between each pair of stages."""
    h, w = image_shape[0], image_shape[1]
    for _ in channels[1:]:
        h, w = -(-h // 2), -(-w // 2)
    return h, w, channels[-1]


class ResNetEncoder(nnx.Module):
    def __init__(self, image_shape: Sequence[int], latent_dim: int, channels: Sequence[int], blocks: int,
                 groups: int, *, rngs: nnx.Rngs):
        self.stem = nnx.Conv(image_shape[-1], channels[0], (3, 3), padding="SAME", rngs=rngs)
        self.stages = nnx.List([nnx.List([ResBlock(c, groups, rngs=rngs) for _ in range(blocks)])
                                for c in channels])
        self.downs = nnx.List([nnx.Conv(a, b, (3, 3), strides=2, padding="SAME", rngs=rngs)
                               for a, b in zip(channels[:-1], channels[1:])])
        self.dense = nnx.Linear(math.prod(feature_shape(image_shape, channels)), latent_dim, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.stem(x)
        for i, stage in enumerate(self.stages):
            for block in stage:
                x = block(x)
            if i < len(self.downs):
                x = self.downs[i](x)
        return self.dense(x.reshape(x.shape[0], -1))


class ResNetDecoder(nnx.Module):
    def __init__(self, image_shape: Sequence[int], latent_dim: int, channels: Sequence[int], blocks: int,
                 groups: int, upsample: str, subpixel: bool = False, *, rngs: nnx.Rngs):
        self.image_shape = tuple(image_shape)
        self.start_shape = feature_shape(image_shape, channels)
        self.dense = nnx.Linear(latent_dim, math.prod(self.start_shape), rngs=rngs)
        widths = list(reversed(channels))
        self.stages = nnx.List([nnx.List([ResBlock(c, groups, rngs=rngs) for _ in range(blocks)])
                                for c in widths])
        if upsample == "transpose":
            self.ups = nnx.List([nnx.ConvTranspose(a, b, (3, 3), strides=2, padding="SAME", rngs=rngs)
                                 for a, b in zip(widths[:-1], widths[1:])])
        else:
            self.ups = nnx.List([nnx.Conv(a, b, (3, 3), padding="SAME", rngs=rngs)
                                 for a, b in zip(widths[:-1], widths[1:])])
        self.upsample = upsample
        self.subpixel = subpixel  # the compile policy's choice (aelab.compiler); same numbers either way
        self.out = nnx.Conv(widths[-1], image_shape[-1], (3, 3), padding="SAME", rngs=rngs)

    def __call__(self, z: jax.Array) -> jax.Array:
        x = self.dense(z).reshape(z.shape[0], *self.start_shape)
        for i, stage in enumerate(self.stages):
            for block in stage:
                x = block(x)
            if i < len(self.ups):
                x = self._upsample(self.ups[i], x)
        h, w = self.image_shape[:2]
        return self.out(x)[:, :h, :w, :]

    def _upsample(self, layer: nnx.Conv | nnx.ConvTranspose, x: jax.Array) -> jax.Array:
        fast = self.subpixel and subpixel_applies(layer, 2)
        if self.upsample == "transpose":
            return conv_transpose_subpixel(layer, x) if fast else layer(x)
        return resize_conv_subpixel(layer, x) if fast else layer(nearest_x2(x))


def groups_fit(channels: Sequence[int], groups: int) -> bool:
    return groups > 0 and all(c % groups == 0 for c in channels)



def check(cfg, example_shape) -> None:
    positive_ints("model.resnet.channels", cfg.channels)
    choose("model.resnet.upsample", cfg.upsample, UPSAMPLE_MODES)
    if cfg.blocks < 1 or not groups_fit(cfg.channels, cfg.groups):
        raise UsageError(f"model.arch=resnet needs model.resnet.blocks={cfg.blocks} >= 1 and model.resnet.groups="
                         f"{cfg.groups} dividing every width of model.resnet.channels={tuple(cfg.channels)}")


@register_architecture("resnet", family="autoencoder", check=check, config={
    "channels": (32, 64),  # widths per stage; each stage halves the size
    "blocks": 1,  # residual blocks per stage
    "groups": 8,  # GroupNorm groups
    "upsample": "transpose",  # the decoder: transpose | resize (nearest, then a conv)
})
def build(cfg, spec: AutoencoderSpec) -> tuple[ResNetEncoder, ResNetDecoder]:
    kwargs = dict(channels=tuple(cfg.channels), blocks=cfg.blocks, groups=cfg.groups, rngs=spec.rngs)
    return (ResNetEncoder(image_shape=spec.example_shape, latent_dim=spec.code_size, **kwargs),
            ResNetDecoder(image_shape=spec.output_shape, latent_dim=spec.latent_dim, upsample=cfg.upsample,
                          subpixel=spec.subpixel, **kwargs))

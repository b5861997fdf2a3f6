"""U-Net (Ronneberger et al. 2015) and the same encoder–decoder without skip connections.

Level i of the encoder is two 3x3 convolutions with `width * 2**i` channels,
then 2x2 max pooling; the decoder mirrors it, upsampling and (with `skips`)
concatenating the encoder's features of the same resolution. A 1x1
convolution gives per-pixel class logits. Inputs whose sides are not
multiples of 2**depth are zero-padded and the logits cropped back, so any
image size works.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from aelab.errors import UsageError, choose
from aelab.models import layers
from aelab.models.architectures import SegmenterSpec
from aelab.registry import register_architecture

# transpose: 2x2 stride-2 transposed convolution; resize: nearest-neighbour upsampling then a
# 3x3 convolution; depth_to_space: a 3x3 convolution to 4x the channels, then sub-pixel
# shuffling (Shi et al. 2016), whose gradient is much cheaper on CPU than a transposed convolution's.
UPSAMPLE_MODES = ("transpose", "resize", "depth_to_space")
NORMS = ("none", "group")


def depth_to_space(x: jax.Array, block: int = 2) -> jax.Array:
    """(B, H, W, C * block**2) -> (B, H * block, W * block, C), the inverse of space_to_depth."""
    b, h, w, c = x.shape
    c_out = c // (block * block)
    x = x.reshape(b, h, w, block, block, c_out)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, h * block, w * block, c_out)


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2 max pooling as a reshape and max: its gradient is much faster on CPU than
    reduce_window's select-and-scatter, and the same on accelerators."""
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


class ConvBlock(nnx.Module):
    """Two 3x3 convolutions, each followed by the (optional) norm and the activation."""

    def __init__(self, in_channels: int, out_channels: int, activation: str, norm: str,
                 *, rngs: nnx.Rngs):
        self.convs = nnx.List([nnx.Conv(a, out_channels, (3, 3), padding="SAME", rngs=rngs)
                               for a in (in_channels, out_channels)])
        groups = min(8, out_channels)
        self.norms = nnx.List([layers.GroupNorm(out_channels, num_groups=groups, rngs=rngs)
                               if norm == "group" else None for _ in range(2)])
        self.act = layers.activation(activation)

    def __call__(self, x: jax.Array) -> jax.Array:
        for conv, norm in zip(self.convs, self.norms):
            x = conv(x)
            if norm is not None:
                x = norm(x)
            x = self.act(x)
        return x


class Upsample(nnx.Module):
    """Doubles the resolution and maps `in_channels` to `out_channels`."""

    def __init__(self, in_channels: int, out_channels: int, mode: str, *, rngs: nnx.Rngs):
        self.mode = mode
        if mode == "transpose":
            self.conv = nnx.ConvTranspose(in_channels, out_channels, (2, 2), strides=2,
                                          padding="SAME", rngs=rngs)
        elif mode == "resize":
            self.conv = nnx.Conv(in_channels, out_channels, (3, 3), padding="SAME", rngs=rngs)
        else:
            self.conv = nnx.Conv(in_channels, 4 * out_channels, (3, 3), padding="SAME", rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.mode == "transpose":
            return self.conv(x)
        if self.mode == "resize":
            b, h, w, c = x.shape
            return self.conv(jax.image.resize(x, (b, 2 * h, 2 * w, c), method="nearest"))
        return depth_to_space(self.conv(x))


class UNet(nnx.Module):
    """Per-pixel class logits (B, H, W, num_classes) for images (B, H, W, C)."""

    def __init__(self, in_channels: int, num_classes: int, depth: int, width: int,
                 upsample: str = "transpose", skips: bool = True, activation: str = "relu",
                 norm: str = "none", *, rngs: nnx.Rngs):
        choose("model.unet.upsample", upsample, UPSAMPLE_MODES)
        choose("model.unet.norm", norm, NORMS)
        if depth < 1 or width < 1 or num_classes < 2:
            raise UsageError(f"U-Net needs model.unet.depth >= 1 (got {depth}), model.unet.width >= 1 "
                             f"(got {width}) and model.num_classes >= 2 (got {num_classes})")
        widths = [width * 2 ** i for i in range(depth + 1)]
        self.depth, self.skips = depth, skips
        self.down = nnx.List([ConvBlock(a, b, activation, norm, rngs=rngs)
                              for a, b in zip([in_channels, *widths[:-2]], widths[:-1])])
        self.bottom = ConvBlock(widths[-2], widths[-1], activation, norm, rngs=rngs)
        self.ups = nnx.List([Upsample(widths[i + 1], widths[i], upsample, rngs=rngs)
                             for i in reversed(range(depth))])
        self.up = nnx.List([ConvBlock(widths[i] * (2 if skips else 1), widths[i], activation, norm,
                                      rngs=rngs) for i in reversed(range(depth))])
        self.head = nnx.Conv(widths[0], num_classes, (1, 1), rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h, w = x.shape[1:3]
        multiple = 2 ** self.depth
        x = jnp.pad(x, ((0, 0), (0, -h % multiple), (0, -w % multiple), (0, 0)))
        features = []
        for block in self.down:
            x = block(x)
            features.append(x)
            x = max_pool_2x2(x)
        x = self.bottom(x)
        for upsample, block, skip in zip(self.ups, self.up, reversed(features)):
            x = upsample(x)
            if self.skips:
                x = jnp.concatenate([x, skip], axis=-1)
            x = block(x)
        return self.head(x)[:, :h, :w, :]


def check(cfg, example_shape) -> None:
    choose("model.unet.upsample", cfg.upsample, UPSAMPLE_MODES)
    choose("model.unet.norm", cfg.norm, NORMS)
    choose("model.unet.activation", cfg.activation, layers.ACTIVATIONS)
    if cfg.depth < 1 or cfg.width < 1:
        raise UsageError(f"model.unet.depth={cfg.depth} and model.unet.width={cfg.width} must be >= 1")


@register_architecture("unet", family="segmentation", check=check, config={
    "depth": 3,  # poolings; level i has width * 2**i channels
    "width": 16,
    "skips": True,  # False: the same encoder-decoder without skip connections
    "norm": "none",  # none | group (GroupNorm after every convolution)
    "upsample": "transpose",  # transpose | resize | depth_to_space
    "activation": "relu",
})
def build(cfg, spec: SegmenterSpec) -> UNet:
    return UNet(spec.example_shape[-1], spec.num_classes, cfg.depth, cfg.width, cfg.upsample, cfg.skips,
                cfg.activation, cfg.norm, rngs=spec.rngs)

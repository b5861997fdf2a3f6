"""A small ViT-like patch encoder with an MLP decoder, as an aelab architecture.

The encoder cuts an image into patch_size x patch_size patches, embeds each with a linear
layer and a learned position, runs `depth` pre-norm Transformer blocks over them and maps the
flattened tokens to the code; the decoder is an MLP from the code to the image.

    config.imports = ("myext.patch",)
    config.model.arch = "patch"
    config.model.patch.patch_size = 2
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

import aelab
from aelab.errors import UsageError
from aelab.models import AutoencoderSpec


class Block(nnx.Module):
    """Pre-norm self-attention and a GELU MLP, each added back to its input."""

    def __init__(self, dim: int, heads: int, *, rngs: nnx.Rngs):
        self.norm1 = nnx.LayerNorm(dim, rngs=rngs)
        self.attention = nnx.MultiHeadAttention(heads, dim, decode=False, rngs=rngs)
        self.norm2 = nnx.LayerNorm(dim, rngs=rngs)
        self.mlp = nnx.Sequential(nnx.Linear(dim, 2 * dim, rngs=rngs), jax.nn.gelu, nnx.Linear(2 * dim, dim, rngs=rngs))

    def __call__(self, tokens: jax.Array) -> jax.Array:
        tokens = tokens + self.attention(self.norm1(tokens))
        return tokens + self.mlp(self.norm2(tokens))


class PatchEncoder(nnx.Module):
    """Images (B, H, W, C) -> codes (B, code_size)."""

    def __init__(self, image_shape, code_size: int, patch: int, dim: int, depth: int, heads: int, *,
                 rngs: nnx.Rngs):
        h, w, c = image_shape
        self.patch, self.tokens = patch, (h // patch) * (w // patch)
        self.embed = nnx.Linear(patch * patch * c, dim, rngs=rngs)
        self.positions = nnx.Param(0.02 * jax.random.normal(rngs.params(), (self.tokens, dim)))
        self.blocks = nnx.List([Block(dim, heads, rngs=rngs) for _ in range(depth)])
        self.norm = nnx.LayerNorm(dim, rngs=rngs)
        self.head = nnx.Linear(self.tokens * dim, code_size, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, c = x.shape
        p = self.patch
        patches = x.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, self.tokens, -1)
        tokens = self.embed(patches) + self.positions[...]
        for block in self.blocks:
            tokens = block(tokens)
        return self.head(self.norm(tokens).reshape(b, -1))


class MLPDecoder(nnx.Module):
    """Codes (B, latent_dim) -> the loss's raw output (B, H, W, C')."""

    def __init__(self, latent_dim: int, hidden, output_shape, *, rngs: nnx.Rngs):
        sizes = [latent_dim, *hidden, math.prod(output_shape)]
        self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])
        self.output_shape = tuple(output_shape)

    def __call__(self, z: jax.Array) -> jax.Array:
        for i, layer in enumerate(self.layers):
            z = layer(z) if i == len(self.layers) - 1 else jax.nn.gelu(layer(z))
        return z.reshape(z.shape[0], *self.output_shape)


def check(cfg, example_shape) -> None:
    """The keys' values, and (once the data is read) that the patches tile the images."""
    if cfg.patch_size < 1 or cfg.depth < 0 or cfg.heads < 1 or cfg.dim % cfg.heads:
        raise UsageError(f"model.patch: patch_size={cfg.patch_size} must be >= 1, depth={cfg.depth} >= 0 and "
                         f"dim={cfg.dim} divisible by heads={cfg.heads}")
    if example_shape is not None and (example_shape[0] % cfg.patch_size or example_shape[1] % cfg.patch_size):
        raise UsageError(f"model.patch.patch_size={cfg.patch_size} does not divide the {example_shape[0]}x"
                         f"{example_shape[1]} images; pick a divisor of both sides")


@aelab.register_architecture("patch", family="autoencoder", check=check, config={
    "patch_size": 2,
    "dim": 32,  # token width
    "depth": 1,  # Transformer blocks
    "heads": 4,
    "decoder": (256,),  # the MLP decoder's hidden widths
})
def build(cfg, spec: AutoencoderSpec) -> tuple[PatchEncoder, MLPDecoder]:
    encoder = PatchEncoder(spec.example_shape, spec.code_size, cfg.patch_size, cfg.dim, cfg.depth, cfg.heads,
                           rngs=spec.rngs)
    return encoder, MLPDecoder(spec.latent_dim, tuple(cfg.decoder), spec.output_shape, rngs=spec.rngs)

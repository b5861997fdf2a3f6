"""What a task asks of an architecture: one spec per family of models, and the one way every task
builds its architecture (`build`). Architectures register with aelab.register_architecture.

| family | tasks | `build(cfg, spec)` returns |
|---|---|---|
| autoencoder | autoencoder, vae, vqvae | (encoder, decoder): images (B, H, W, C) -> (B, code_size); |
| | | codes (B, latent_dim) -> (B, *output_shape) |
| segmentation | segmentation | a module: images (B, H, W, C) -> logits (B, H, W, num_classes) |
| seq2seq | translation, captioning | a sequence model (aelab.models.seq2seq: Transformer, AttentionRNN) |
| code_prior | vqprior | an autoregressive model over code tokens (aelab.models.prior.CodePrior) |
"""

from __future__ import annotations

import dataclasses

import ml_collections
from flax import nnx

from aelab.registry import ARCHITECTURES, Entry


@dataclasses.dataclass(frozen=True)
class AutoencoderSpec:
    """An image autoencoder's encoder and decoder, as its task needs them."""

    example_shape: tuple[int, ...]  # (H, W, C): the images the encoder reads
    output_shape: tuple[int, ...]  # (H, W, C'): the decoder's raw output (C' > C: a likelihood's numbers a pixel)
    code_size: int  # numbers the encoder emits per image (a VAE's 2 x latent_dim: means and log-variances)
    latent_dim: int  # numbers the decoder reads per image
    rngs: nnx.Rngs
    subpixel: bool = False  # the compile policy: stride-2 transposed convolutions as sub-pixel convolutions


@dataclasses.dataclass(frozen=True)
class SegmenterSpec:
    example_shape: tuple[int, ...]  # (H, W, C)
    num_classes: int
    rngs: nnx.Rngs


@dataclasses.dataclass(frozen=True)
class Seq2SeqSpec:
    vocab_size: int
    max_length: int  # tokens per sequence, EOS included
    rngs: nnx.Rngs
    image_shape: tuple[int, ...] | None = None  # captioning: images (H, W, C) instead of source tokens
    image_channels: tuple[int, ...] = ()  # ...read by stride-2 3x3 convolutions of these widths


@dataclasses.dataclass(frozen=True)
class CodePriorSpec:
    codebook_size: int
    length: int  # code tokens per image
    rngs: nnx.Rngs


def entry(family: str, model: ml_collections.ConfigDict) -> Entry:
    """The registered architecture `model.arch` of `family` (a UsageError naming the known ones)."""
    return ARCHITECTURES.get(model.arch, family)


def section(model: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The chosen architecture's own keys: `config.model.<arch>` (empty where it declares none)."""
    return model[model.arch] if model.arch in model else ml_collections.ConfigDict()


def check(family: str, model: ml_collections.ConfigDict, example_shape=None) -> None:
    """The architecture's own check of its keys (and of the example shape, once known)."""
    arch = entry(family, model)
    if arch.check is not None:
        arch.check(section(model), None if example_shape is None else tuple(example_shape))


def build(family: str, model: ml_collections.ConfigDict, spec):
    """`model.arch`'s build of `spec`, after its check against the example shape."""
    arch = entry(family, model)
    shape = getattr(spec, "example_shape", None) or getattr(spec, "image_shape", None)
    if arch.check is not None:
        arch.check(section(model), None if shape is None else tuple(shape))
    return arch.target(section(model), spec)

"""Model registry: `build_autoencoder(config, image_shape, rngs)` picks the architecture by name."""

from __future__ import annotations

from typing import Sequence

import ml_collections
from flax import nnx

from aelab import losses
from aelab.errors import UsageError, choose
from aelab.models.autoencoder import CODE_ACTIVATIONS, VAE, Autoencoder
from aelab.models.conv import UPSAMPLE_MODES, ConvDecoder, ConvEncoder
from aelab.models.layers import ACTIVATIONS
from aelab.models.mlp import MLPDecoder, MLPEncoder
from aelab.models.vq import VQVAE, VectorQuantizer


def _mlp(m: ml_collections.ConfigDict, image_shape, code_size, rngs):
    kwargs = dict(image_shape=image_shape, hidden=tuple(m.hidden), activation=m.activation, rngs=rngs)
    return MLPEncoder(latent_dim=code_size, **kwargs), MLPDecoder(latent_dim=m.latent_dim, **kwargs)


def _conv(m: ml_collections.ConfigDict, image_shape, code_size, rngs):
    kwargs = dict(image_shape=image_shape, channels=tuple(m.channels), strides=tuple(m.strides),
                  kernel_size=m.kernel_size, activation=m.activation, rngs=rngs)
    return (ConvEncoder(latent_dim=code_size, **kwargs),
            ConvDecoder(latent_dim=m.latent_dim, upsample=m.upsample, **kwargs))


ARCHITECTURES = {"mlp": _mlp, "conv": _conv}


def check_autoencoder(config: ml_collections.ConfigDict, kind: str = "ae") -> None:
    """The names and sizes of `config.model` an autoencoder of `kind` reads, checked without
    building it (raises UsageError): what a sweep checks of every point before it runs."""
    m = config.model
    choose("model.arch", m.arch, ARCHITECTURES)
    choose("model.activation", m.activation, ACTIVATIONS)
    choose("model.code_activation", m.code_activation, CODE_ACTIVATIONS)
    if m.arch == "conv":
        choose("model.upsample", m.upsample, UPSAMPLE_MODES)
        if len(m.channels) != len(m.strides) or not m.channels:
            raise UsageError(
                f"model.channels={tuple(m.channels)} and model.strides={tuple(m.strides)} must be "
                "non-empty and of the same length (one stride per conv layer)")
    if kind == "vqvae" and m.latent_dim % config.vq.embedding_dim:
        raise UsageError(f"model.latent_dim={m.latent_dim} must be a multiple of "
                         f"vq.embedding_dim={config.vq.embedding_dim} (codes are split into tokens)")


def build_autoencoder(config: ml_collections.ConfigDict, image_shape: Sequence[int],
                      rngs: nnx.Rngs, kind: str = "ae") -> Autoencoder:
    """The autoencoder of `config.model` for images of `image_shape`, linked for `config.loss`.

    kind: "ae" (deterministic code), "vae" (the encoder emits mean and
    log-variance), or "vqvae" (the code is quantized against `config.vq`'s codebook).
    """
    m = config.model
    check_autoencoder(config, kind)
    code_size = 2 * m.latent_dim if kind == "vae" else m.latent_dim
    encoder, decoder = ARCHITECTURES[m.arch](m, tuple(image_shape), code_size, rngs)
    link = losses.recon_loss(config.loss).link
    if kind == "vae":
        return VAE(encoder, decoder, link, m.latent_dim)
    if kind == "vqvae":
        quantizer = VectorQuantizer(config.vq.codebook_size, config.vq.embedding_dim, rngs=rngs)
        return VQVAE(encoder, decoder, link, m.latent_dim, quantizer)
    return Autoencoder(encoder, decoder, link, m.latent_dim, m.code_activation)

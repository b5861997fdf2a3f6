"""Model registry: `build_autoencoder(config, image_shape, rngs)` picks the architecture by name."""

from __future__ import annotations

from typing import Sequence

import ml_collections
from flax import nnx

from aelab import losses
from aelab.errors import UsageError, choose
from aelab.models.autoencoder import Autoencoder
from aelab.models.conv import ConvDecoder, ConvEncoder
from aelab.models.mlp import MLPDecoder, MLPEncoder


def _mlp(m: ml_collections.ConfigDict, image_shape, rngs):
    kwargs = dict(image_shape=image_shape, latent_dim=m.latent_dim, hidden=tuple(m.hidden),
                  activation=m.activation, rngs=rngs)
    return MLPEncoder(**kwargs), MLPDecoder(**kwargs)


def _conv(m: ml_collections.ConfigDict, image_shape, rngs):
    if len(m.channels) != len(m.strides) or not m.channels:
        raise UsageError(
            f"model.channels={tuple(m.channels)} and model.strides={tuple(m.strides)} must be "
            "non-empty and of the same length (one stride per conv layer)")
    kwargs = dict(image_shape=image_shape, latent_dim=m.latent_dim, channels=tuple(m.channels),
                  strides=tuple(m.strides), kernel_size=m.kernel_size, activation=m.activation,
                  rngs=rngs)
    return ConvEncoder(**kwargs), ConvDecoder(upsample=m.upsample, **kwargs)


ARCHITECTURES = {"mlp": _mlp, "conv": _conv}


def build_autoencoder(config: ml_collections.ConfigDict, image_shape: Sequence[int],
                      rngs: nnx.Rngs) -> Autoencoder:
    """The autoencoder of `config.model` for images of `image_shape`, linked for `config.loss`."""
    choose("model.arch", config.model.arch, ARCHITECTURES)
    encoder, decoder = ARCHITECTURES[config.model.arch](config.model, tuple(image_shape), rngs)
    return Autoencoder(encoder, decoder, losses.recon_loss(config.loss).link)

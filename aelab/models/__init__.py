"""The image autoencoders' encoders and decoders, picked by `config.model.arch`; the tasks compose
them into an Autoencoder, a VAE or a VQ-VAE."""

from __future__ import annotations

from typing import Sequence

import ml_collections
from flax import nnx

from aelab.errors import UsageError, choose
from aelab.models.autoencoder import CODE_ACTIVATIONS, VAE, Autoencoder
from aelab.models.conv import UPSAMPLE_MODES, ConvDecoder, ConvEncoder
from aelab.models.hierarchical import HierarchicalVAE
from aelab.models.layers import ACTIVATIONS
from aelab.models import resnet
from aelab.models.mlp import MLPDecoder, MLPEncoder
from aelab.models.resnet import ResNetDecoder, ResNetEncoder
from aelab.models.vq import VQVAE, VectorQuantizer

__all__ = ["ARCHITECTURES", "CODE_ACTIVATIONS", "VAE", "VQVAE", "Autoencoder", "HierarchicalVAE", "VectorQuantizer",
           "check_encoder_decoder", "encoder_decoder"]


def _mlp(m: ml_collections.ConfigDict, image_shape, output_shape, code_size, rngs, subpixel):
    kwargs = dict(hidden=tuple(m.hidden), activation=m.activation, rngs=rngs)
    return (MLPEncoder(image_shape=image_shape, latent_dim=code_size, **kwargs),
            MLPDecoder(image_shape=output_shape, latent_dim=m.latent_dim, **kwargs))


def _conv(m: ml_collections.ConfigDict, image_shape, output_shape, code_size, rngs, subpixel):
    kwargs = dict(channels=tuple(m.channels), strides=tuple(m.strides), kernel_size=m.kernel_size,
                  activation=m.activation, rngs=rngs)
    return (ConvEncoder(image_shape=image_shape, latent_dim=code_size, **kwargs),
            ConvDecoder(image_shape=output_shape, latent_dim=m.latent_dim, upsample=m.upsample,
                        subpixel=subpixel, **kwargs))


def _resnet(m: ml_collections.ConfigDict, image_shape, output_shape, code_size, rngs, subpixel):
    kwargs = dict(channels=tuple(m.channels), blocks=m.blocks, groups=m.groups, rngs=rngs)
    return (ResNetEncoder(image_shape=image_shape, latent_dim=code_size, **kwargs),
            ResNetDecoder(image_shape=output_shape, latent_dim=m.latent_dim, upsample=m.upsample,
                          subpixel=subpixel, **kwargs))


ARCHITECTURES = {"mlp": _mlp, "conv": _conv, "resnet": _resnet}


def check_encoder_decoder(m: ml_collections.ConfigDict) -> None:
    """The names and sizes of `config.model` that `encoder_decoder` reads, checked without
    building anything (raises UsageError): what a sweep checks of every point before it runs."""
    choose("model.arch", m.arch, ARCHITECTURES)
    choose("model.activation", m.activation, ACTIVATIONS)
    if m.arch == "resnet":
        choose("model.upsample", m.upsample, resnet.UPSAMPLE_MODES)
        if not m.channels or m.blocks < 1 or not resnet.groups_fit(m.channels, m.groups):
            raise UsageError(f"model.arch=resnet needs stage widths model.channels={tuple(m.channels)} (non-empty), "
                             f"model.blocks={m.blocks} >= 1 and model.groups={m.groups} dividing every width")
    if m.arch == "conv":
        choose("model.upsample", m.upsample, UPSAMPLE_MODES)
        if len(m.channels) != len(m.strides) or not m.channels:
            raise UsageError(
                f"model.channels={tuple(m.channels)} and model.strides={tuple(m.strides)} must be "
                "non-empty and of the same length (one stride per conv layer)")


def encoder_decoder(m: ml_collections.ConfigDict, image_shape: Sequence[int], code_size: int,
                    rngs: nnx.Rngs, subpixel: bool = False,
                    out_channels: int | None = None) -> tuple[nnx.Module, nnx.Module]:
    """The image autoencoders' one factory: the encoder (images -> `code_size` numbers) and the
    decoder (`m.latent_dim` numbers -> the decoder's raw output, an image's shape, with
    `out_channels` channels where a likelihood needs more numbers per pixel than the image has)
    of `config.model` `m`. `subpixel`: the compile policy's choice for transposed convolutions."""
    check_encoder_decoder(m)
    image_shape = tuple(image_shape)
    output_shape = (*image_shape[:-1], out_channels or image_shape[-1])
    return ARCHITECTURES[m.arch](m, image_shape, output_shape, code_size, rngs, subpixel)

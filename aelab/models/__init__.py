"""Models: the image autoencoders' architectures (mlp, conv, resnet), composed by the tasks into an
Autoencoder, a VAE or a VQ-VAE; the U-Net; the sequence models; the code prior. Each architecture
registers with aelab.register_architecture in its own module (aelab.models.architectures lists
the families and what each builds)."""

from __future__ import annotations

from aelab.models import conv, mlp, prior, resnet, seq2seq, unet  # noqa: F401  (each registers its architectures)
from aelab.models.architectures import AutoencoderSpec, CodePriorSpec, SegmenterSpec, Seq2SeqSpec, build, check
from aelab.models.autoencoder import CODE_ACTIVATIONS, VAE, Autoencoder
from aelab.models.hierarchical import HierarchicalVAE
from aelab.models.vq import VQVAE, VectorQuantizer

__all__ = ["CODE_ACTIVATIONS", "VAE", "VQVAE", "Autoencoder", "AutoencoderSpec", "CodePriorSpec", "HierarchicalVAE",
           "SegmenterSpec", "Seq2SeqSpec", "VectorQuantizer", "build", "check"]

"""Vector quantization (van den Oord et al. 2017) with a straight-through estimator."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from aelab.models.autoencoder import Autoencoder


class VectorQuantizer(nnx.Module):
    """Maps each `embedding_dim` slice of a code to its nearest of `codebook_size` vectors."""

    def __init__(self, codebook_size: int, embedding_dim: int, *, rngs: nnx.Rngs):
        scale = 1.0 / codebook_size
        self.codebook = nnx.Param(jax.random.uniform(
            rngs.params(), (codebook_size, embedding_dim), minval=-scale, maxval=scale))
        self.embedding_dim = embedding_dim

    def indices(self, z_e: jax.Array) -> jax.Array:
        """(B, latent_dim) -> (B, tokens) nearest-code indices."""
        tokens = z_e.reshape(z_e.shape[0], -1, self.embedding_dim)
        codebook = self.codebook[...]
        distances = (jnp.sum(tokens ** 2, -1, keepdims=True) - 2 * tokens @ codebook.T
                     + jnp.sum(codebook ** 2, -1))
        return jnp.argmin(distances, axis=-1)

    def quantize(self, z_e: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(z_q with straight-through gradients to z_e, the raw nearest codes q), both (B, latent_dim)."""
        q = self.codebook[...][self.indices(z_e)].reshape(z_e.shape)
        return z_e + jax.lax.stop_gradient(q - z_e), q


class VQVAE(Autoencoder):
    """An autoencoder whose code is quantized: `encode` gives the quantized code z_q."""

    def __init__(self, encoder, decoder, link, latent_dim: int, quantizer: VectorQuantizer):
        super().__init__(encoder, decoder, link, latent_dim)
        self.quantizer = quantizer

    def encode(self, x: jax.Array) -> jax.Array:
        return self.quantizer.quantize(self.encoder(x))[0]

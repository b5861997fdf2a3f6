"""Vector quantization (van den Oord et al. 2017) with a straight-through estimator."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from aelab.models.autoencoder import Autoencoder


class EMAState(nnx.Variable):
    """A codebook kept by exponential moving averages: state the step updates, not a gradient."""


class VectorQuantizer(nnx.Module):
    """Maps each `embedding_dim` slice of a code to its nearest of `codebook_size` vectors.

    With `ema_decay` > 0 the codebook is not trained by gradients but follows moving averages
    of the encoder outputs assigned to each code (van den Oord et al. 2017, appendix A.1):
    N_k <- d N_k + (1 - d) n_k, m_k <- d m_k + (1 - d) sum of its outputs, e_k = m_k / N_k
    (N Laplace-smoothed), updated by `ema_update` at every training step."""

    def __init__(self, codebook_size: int, embedding_dim: int, ema_decay: float = 0.0, *, rngs: nnx.Rngs):
        scale = 1.0 / codebook_size
        init = jax.random.uniform(rngs.params(), (codebook_size, embedding_dim), minval=-scale, maxval=scale)
        self.ema_decay = ema_decay
        if ema_decay:
            self.codebook = EMAState(init)
            self.cluster_size = EMAState(jnp.ones(codebook_size))  # as if each code had been used once
            self.embed_sum = EMAState(init)
        else:
            self.codebook = nnx.Param(init)
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

    def ema_update(self, z_e: jax.Array, key: jax.Array, restart_below: float = 0.0, eps: float = 1e-5) -> None:
        """One moving-average step of the codebook toward the encoder outputs `z_e` assigned to
        each code. Codes whose averaged use N_k falls below `restart_below` (dead codes) restart
        at encoder outputs of this batch drawn with `key` (Dhariwal et al. 2020, Jukebox)."""
        tokens = jax.lax.stop_gradient(z_e).reshape(-1, self.embedding_dim)
        size = self.codebook.shape[0]
        assigned = jax.nn.one_hot(self.indices(jax.lax.stop_gradient(z_e)).reshape(-1), size, dtype=tokens.dtype)
        d = self.ema_decay
        cluster_size = d * self.cluster_size[...] + (1 - d) * assigned.sum(0)
        embed_sum = d * self.embed_sum[...] + (1 - d) * (assigned.T @ tokens)
        total = cluster_size.sum()
        smoothed = (cluster_size + eps) / (total + size * eps) * total
        if restart_below:
            dead = cluster_size < restart_below
            picks = tokens[jax.random.randint(key, (size,), 0, tokens.shape[0])]
            cluster_size = jnp.where(dead, 1.0, cluster_size)
            smoothed = jnp.where(dead, 1.0, smoothed)
            embed_sum = jnp.where(dead[:, None], picks, embed_sum)
        self.cluster_size[...] = cluster_size
        self.embed_sum[...] = embed_sum
        self.codebook[...] = embed_sum / smoothed[:, None]


class VQVAE(Autoencoder):
    """An autoencoder whose code is quantized: `encode` gives the quantized code z_q."""

    def __init__(self, encoder, decoder, link, latent_dim: int, quantizer: VectorQuantizer):
        super().__init__(encoder, decoder, link, latent_dim)
        self.quantizer = quantizer

    def encode(self, x: jax.Array) -> jax.Array:
        return self.quantizer.quantize(self.encoder(x))[0]

    def code_tokens(self, x: jax.Array) -> jax.Array:
        """Each image's code as tokens (B, latent_dim / embedding_dim): codebook indices."""
        return self.quantizer.indices(self.encoder(x))

    def decode_tokens(self, tokens: jax.Array) -> jax.Array:
        """Images decoded from code tokens (B, T)."""
        return self.decode(self.quantizer.codebook[...][tokens].reshape(len(tokens), -1))

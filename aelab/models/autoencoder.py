"""Autoencoders with one API: `encode`, `decode`, `reconstruct`, `interpolate` (and `sample` for VAEs).

The raw decoder output is what a loss sees (logits for `bce`); `decode` and
`reconstruct` apply the link and return pixels.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from aelab.errors import choose

CODE_ACTIVATIONS = {"none": lambda z: z, "sigmoid": jax.nn.sigmoid, "relu": jax.nn.relu}


class Autoencoder(nnx.Module):
    """A deterministic autoencoder; `code_activation` bounds the code (sigmoid for KL sparsity)."""

    def __init__(self, encoder: nnx.Module, decoder: nnx.Module,
                 link: Callable[[jax.Array], jax.Array], latent_dim: int,
                 code_activation: str = "none"):
        choose("model.code_activation", code_activation, CODE_ACTIVATIONS)
        self.latent_dim = latent_dim
        self.encoder = encoder
        self.decoder = decoder
        self.link = link
        self.code_activation = CODE_ACTIVATIONS[code_activation]

    def encode(self, x: jax.Array) -> jax.Array:
        return self.code_activation(self.encoder(x))

    def decode(self, z: jax.Array) -> jax.Array:
        return self.link(self.decoder(z))

    def reconstruct(self, x: jax.Array) -> jax.Array:
        return self.decode(self.encode(x))

    def interpolate(self, x_a: jax.Array, x_b: jax.Array, steps: int) -> jax.Array:
        """Decodes `steps` codes evenly spaced between the codes of two images (H, W, C)."""
        z = self.encode(jnp.stack([x_a, x_b]))
        t = jnp.linspace(0.0, 1.0, steps)[:, None]
        return self.decode((1 - t) * z[0] + t * z[1])

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.decoder(self.encode(x))


class VAE(Autoencoder):
    """Diagonal Gaussian posterior q(z|x) = N(mean, exp(logvar)), standard normal prior.

    The encoder emits 2 * latent_dim numbers: the mean and the log-variance.
    `encode` gives the posterior mean (the code used downstream).
    """

    def posterior(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        mean, logvar = jnp.split(self.encoder(x), 2, axis=-1)
        return mean, logvar

    def encode(self, x: jax.Array) -> jax.Array:
        return self.posterior(x)[0]

    def sample(self, n: int, rng: jax.Array) -> jax.Array:
        """`n` images decoded from prior draws z ~ N(0, I) (Bernoulli means for bce)."""
        return self.decode(jax.random.normal(rng, (n, self.latent_dim)))

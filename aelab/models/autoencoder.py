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
from aelab.losses import LOG_2PI, log_normal

CODE_ACTIVATIONS = {"none": lambda z: z, "sigmoid": jax.nn.sigmoid, "relu": jax.nn.relu}


class Autoencoder(nnx.Module):
    """A deterministic autoencoder; `code_activation` bounds the code (sigmoid for KL sparsity).
    With `prior="standard_normal"` (its codes were pulled toward N(0, I): a Wasserstein
    autoencoder) it also samples, decoding draws from that prior."""

    def __init__(self, encoder: nnx.Module, decoder: nnx.Module,
                 link: Callable[[jax.Array], jax.Array], latent_dim: int,
                 code_activation: str = "none", prior: str | None = None):
        choose("model.code_activation", code_activation, CODE_ACTIVATIONS)
        self.latent_dim = latent_dim
        self.encoder = encoder
        self.decoder = decoder
        self.link = link
        self.code_activation = CODE_ACTIVATIONS[code_activation]
        self.latent_prior = prior

    @property
    def can_sample(self) -> bool:
        return self.latent_prior is not None

    def sample(self, n: int, rng: jax.Array) -> jax.Array:
        """`n` images decoded from draws of the prior its codes were pulled toward."""
        if self.latent_prior is None:
            raise ValueError("this autoencoder has no prior to sample from (train it with a penalty that "
                             "declares one, e.g. penalty.mmd)")
        return self.decode(jax.random.normal(rng, (n, self.latent_dim)))

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
    """Diagonal Gaussian posterior q(z|x) = N(mean, exp(logvar)); a standard normal prior, or
    with `pseudo_inputs` (K, H, W, C) the VampPrior p(z) = (1/K) sum_k q(z|u_k) over K learned
    pseudo-inputs u_k (Tomczak & Welling 2018).

    The encoder emits 2 * latent_dim numbers: the mean and the log-variance.
    `encode` gives the posterior mean (the code used downstream).
    """

    can_sample = True

    def __init__(self, encoder: nnx.Module, decoder: nnx.Module, link, latent_dim: int,
                 pseudo_inputs: jax.Array | None = None):
        super().__init__(encoder, decoder, link, latent_dim)
        self.pseudo_inputs = None if pseudo_inputs is None else nnx.Param(pseudo_inputs)

    def posterior(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        mean, logvar = jnp.split(self.encoder(x), 2, axis=-1)
        return mean, logvar

    def encode(self, x: jax.Array) -> jax.Array:
        return self.posterior(x)[0]

    def log_prior(self, z: jax.Array) -> jax.Array:
        """log p(z) per example, summed over the latent dimensions; z (..., D)."""
        if self.pseudo_inputs is None:
            return log_normal(z)
        means, logvars = self.posterior(self.pseudo_inputs[...])  # (K, D) each
        per_component = -0.5 * jnp.sum(LOG_2PI + logvars + jnp.square(z[..., None, :] - means) / jnp.exp(logvars),
                                       axis=-1)  # (..., K)
        return jax.scipy.special.logsumexp(per_component, axis=-1) - jnp.log(means.shape[0])

    def sample(self, n: int, rng: jax.Array) -> jax.Array:
        """`n` images decoded from prior draws (Bernoulli means for bce): z ~ N(0, I), or for the
        VampPrior z ~ q(z|u_k) of a uniformly drawn pseudo-input k."""
        if self.pseudo_inputs is None:
            return self.decode(jax.random.normal(rng, (n, self.latent_dim)))
        pick, noise = jax.random.split(rng)
        eps = jax.random.normal(noise, (n, self.latent_dim))
        means, logvars = self.posterior(self.pseudo_inputs[...])
        k = jax.random.randint(pick, (n,), 0, means.shape[0])
        return self.decode(means[k] + jnp.exp(0.5 * logvars[k]) * eps)

"""A hierarchical VAE with top-down inference (Sønderby et al. 2016, ladder VAE; the NVAE and
VDVAE family at a size for a CPU): stochastic layers z_1 (bottom) .. z_L (top).

Generative: z_L ~ N(0, I), z_l ~ p(z_l | z_{l+1}) = N(mu_p, sigma_p) from a top-down network,
x ~ p(x | z_1) by the decoder. Inference shares the top-down path: a bottom-up pass gives
features d_1 .. d_L of x; q(z_L | x) comes from d_L, and q(z_l | x, z_{l+1}) from d_l and the
same top-down features t_l that give the prior. The KL of each layer is between two Gaussians,
in closed form. The code of an image (`encode`) is the posterior means of every layer,
bottom first; `decode` reads its z_1 part.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from aelab.losses import log_normal
from aelab.models import layers
from aelab.models.autoencoder import Autoencoder


def gaussian_kl_between(q_mean, q_logvar, p_mean, p_logvar) -> jax.Array:
    """KL(N(q_mean, e^q_logvar) || N(p_mean, e^p_logvar)) per dimension."""
    return 0.5 * (p_logvar - q_logvar + (jnp.exp(q_logvar) + jnp.square(q_mean - p_mean)) / jnp.exp(p_logvar) - 1.0)


class HierarchicalVAE(Autoencoder):
    can_sample = True

    def __init__(self, encoder: nnx.Module, decoder: nnx.Module, link, latents: Sequence[int], hidden: int,
                 activation: str, temperature: float = 1.0, *, rngs: nnx.Rngs):
        super().__init__(encoder, decoder, link, sum(latents))
        self.latents, self.temperature = tuple(latents), temperature
        top = len(latents) - 1
        self.act = layers.activation(activation)
        self.up = nnx.List([nnx.Linear(hidden, hidden, rngs=rngs) for _ in range(top)])
        self.q_top = nnx.Linear(hidden, 2 * latents[top], rngs=rngs)
        self.down = nnx.List([nnx.Linear(latents[l + 1], hidden, rngs=rngs) for l in range(top)])
        self.prior = nnx.List([nnx.Linear(hidden, 2 * latents[l], rngs=rngs) for l in range(top)])
        self.posterior_net = nnx.List([nnx.Linear(2 * hidden, 2 * latents[l], rngs=rngs) for l in range(top)])

    def _bottom_up(self, x: jax.Array) -> list[jax.Array]:
        features = [self.act(self.encoder(x))]
        for layer in self.up:
            features.append(self.act(layer(features[-1])))
        return features

    def _top_down(self, features, key: jax.Array | None, batch: int, temperature: float = 1.0):
        """Layers top to bottom: (z, q mean, q logvar, p mean, p logvar) each, z drawn from q
        with `key` (its mean without one). Without features (None), q is the prior with its
        variance scaled by temperature^2: generation."""
        top = len(self.latents) - 1
        keys = list(jax.random.split(key, len(self.latents))) if key is not None else [None] * len(self.latents)
        out, z = [], None
        for l in range(top, -1, -1):
            if l == top:
                p_mean = jnp.zeros((batch, self.latents[l]))
                p_logvar = jnp.zeros_like(p_mean)
            else:
                t = self.act(self.down[l](z))  # the top-down features of this layer, shared by p and q
                p_mean, p_logvar = jnp.split(self.prior[l](t), 2, axis=-1)
            if features is None:
                q_mean, q_logvar = p_mean, p_logvar + 2.0 * jnp.log(temperature)
            elif l == top:
                q_mean, q_logvar = jnp.split(self.q_top(features[top]), 2, axis=-1)
            else:
                q_mean, q_logvar = jnp.split(self.posterior_net[l](jnp.concatenate([features[l], t], -1)), 2, -1)
            z = q_mean if keys[l] is None else q_mean + jnp.exp(0.5 * q_logvar) * jax.random.normal(keys[l], q_mean.shape)
            out.append((z, q_mean, q_logvar, p_mean, p_logvar))
        return out[::-1]  # bottom first

    def layers_of(self, x: jax.Array, key: jax.Array | None):
        """Every layer's (z, q mean, q logvar, p mean, p logvar), bottom first, z ~ q(.|x) (the
        means without a key)."""
        return self._top_down(self._bottom_up(x), key, x.shape[0])

    def encode(self, x: jax.Array) -> jax.Array:
        return jnp.concatenate([q_mean for _, q_mean, *_ in self.layers_of(x, None)], axis=-1)

    def decode(self, z: jax.Array) -> jax.Array:
        return self.link(self.decoder(z[:, :self.latents[0]]))

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.decoder(self.layers_of(x, None)[0][0])

    def elbo_terms(self, x: jax.Array, key: jax.Array):
        """(decoder raw output, KL per latent dimension of every layer (B, sum of latents)), one
        posterior sample per example."""
        drawn = self.layers_of(x, key)
        kl = [gaussian_kl_between(q_m, q_lv, p_m, p_lv) for _, q_m, q_lv, p_m, p_lv in drawn]
        return self.decoder(drawn[0][0]), jnp.concatenate(kl, axis=-1)

    def log_weights(self, x: jax.Array, key: jax.Array, samples: int, log_likelihood) -> jax.Array:
        """log p(x, z) - log q(z | x) for `samples` draws per example: (samples, B)."""
        features = self._bottom_up(x)

        def one(k):
            drawn = self._top_down(features, k, x.shape[0])
            log_pq = sum(log_normal(z, p_m, p_lv) - log_normal(z, q_m, q_lv) for z, q_m, q_lv, p_m, p_lv in drawn)
            return log_likelihood(self.decoder(drawn[0][0]), x) + log_pq

        return jax.vmap(one)(jax.random.split(key, samples))

    def sample(self, n: int, rng: jax.Array) -> jax.Array:
        """`n` images decoded from the prior, every layer's noise scaled by `temperature`."""
        drawn = self._top_down(None, rng, n, self.temperature)
        return self.decode(drawn[0][0])

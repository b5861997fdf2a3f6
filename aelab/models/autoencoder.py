"""The autoencoder: an encoder, a decoder and the output link of its loss."""

from __future__ import annotations

from typing import Callable

import jax
from flax import nnx


class Autoencoder(nnx.Module):
    """`encode` images to codes, `decode` codes to images; `__call__` gives raw decoder output.

    The raw output is what the loss sees (logits for `bce`); `decode` and
    `reconstruct` apply the link and return pixels.
    """

    def __init__(self, encoder: nnx.Module, decoder: nnx.Module,
                 link: Callable[[jax.Array], jax.Array]):
        self.encoder = encoder
        self.decoder = decoder
        self.link = link

    def encode(self, x: jax.Array) -> jax.Array:
        return self.encoder(x)

    def decode(self, z: jax.Array) -> jax.Array:
        return self.link(self.decoder(z))

    def reconstruct(self, x: jax.Array) -> jax.Array:
        return self.decode(self.encode(x))

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.decoder(self.encoder(x))

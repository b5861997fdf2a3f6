"""An autoregressive prior over a VQ-VAE's code tokens (van den Oord et al. 2017, section 3.2):
p(c) = prod_t p(c_t | c_<t), a small decoder-only Transformer, so that new codes, and through
the frozen decoder new images, can be drawn."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from aelab.errors import UsageError
from aelab.models.architectures import CodePriorSpec
from aelab.models.layers import Dense
from aelab.registry import register_architecture
from aelab.models.seq2seq import EncoderLayer, Rng, causal_mask, dropout


class CodePrior(nnx.Module):
    """Pre-norm Transformer layers under a causal mask over `length` tokens of `codebook_size`
    codes; position t reads a start token and codes 0..t-1 and predicts code t."""

    def __init__(self, codebook_size: int, length: int, dim: int = 128, heads: int = 4, layers: int = 2,
                 hidden: int = 512, dropout_rate: float = 0.1, *, rngs: nnx.Rngs):
        self.codebook_size, self.length, self.rate = codebook_size, length, dropout_rate
        init = nnx.initializers.normal(0.02)
        self.embed = nnx.Embed(codebook_size + 1, dim, embedding_init=init, rngs=rngs)  # the last is START
        self.positions = nnx.Param(init(rngs.params(), (length, dim)))
        self.layers = nnx.List([EncoderLayer(dim, heads, hidden, rngs=rngs) for _ in range(layers)])
        self.norm = nnx.LayerNorm(dim, rngs=rngs)
        self.out = Dense(dim, codebook_size, rngs=rngs)

    def __call__(self, codes: jax.Array, dropout_rng: jax.Array | None = None) -> jax.Array:
        """Logits (B, T, K) of each code given the ones before it; codes (B, T) integers."""
        rng = Rng(dropout_rng)
        start = jnp.full_like(codes[:, :1], self.codebook_size)
        x = self.embed(jnp.concatenate([start, codes[:, :-1]], axis=1)) + self.positions[...]
        x = dropout(x, self.rate, rng())
        mask = causal_mask(self.length)
        for layer in self.layers:
            x = layer(x, mask, self.rate, rng)
        return self.out(self.norm(x))

    def sample(self, num_samples: int, key: jax.Array, temperature: float = 1.0) -> jax.Array:
        """Codes (num_samples, T) drawn one position at a time (the whole prefix is re-read at
        each step: code sequences are short)."""

        def draw(t, state):
            codes, key = state
            key, sub = jax.random.split(key)
            logits = self(codes)[:, t] / temperature
            return codes.at[:, t].set(jax.random.categorical(sub, logits)), key

        codes = jnp.zeros((num_samples, self.length), jnp.int32)
        return jax.lax.fori_loop(0, self.length, draw, (codes, key))[0]


def check(cfg, example_shape) -> None:
    if cfg.embed_dim % cfg.num_heads or cfg.num_layers < 1 or not 0 <= cfg.dropout < 1:
        raise UsageError(f"model.transformer.embed_dim={cfg.embed_dim} must be divisible by "
                         f"model.transformer.num_heads={cfg.num_heads}, model.transformer.num_layers="
                         f"{cfg.num_layers} >= 1 and model.transformer.dropout={cfg.dropout} in [0, 1)")


@register_architecture("transformer", family="code_prior", check=check, config={
    "embed_dim": 128,  # the Transformer's width
    "num_layers": 2,
    "num_heads": 4,
    "mlp_dim": 512,
    "dropout": 0.1,
})
def build(cfg, spec: CodePriorSpec) -> CodePrior:
    return CodePrior(spec.codebook_size, spec.length, cfg.embed_dim, cfg.num_heads, cfg.num_layers, cfg.mlp_dim,
                     cfg.dropout, rngs=spec.rngs)

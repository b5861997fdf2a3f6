"""Sequence encoder–decoders for translation and captioning: an attention RNN and a Transformer.

Both share one interface, which teacher-forced training and the compiled
decoders (aelab.text.decode) rely on:

    model(source, target_in, dropout_rng=None) -> logits (B, T, V)
    model.encode(source) -> memory                     # a pytree, batch first
    model.init_cache(memory, length) -> cache          # a pytree, batch first
    model.decode_step(memory, cache, tokens, t) -> (logits (B, V), cache)

`tokens` is the (B, length) buffer of tokens written so far (BOS at 0);
decode_step reads token t and returns the logits of token t+1. The
Transformer's cache holds every decoder layer's keys and values (written at
position t, fixed shape); its memory holds the cross-attention keys and
values of the source, computed once (beam search repeats the memory per beam
but never reorders it). The RNN's cache holds its recurrent state. PAD never
receives attention: source keys that are PAD are masked in every attention,
and target keys that are PAD in the decoder's.

For captioning, `source` is a batch of images (B, H, W, C): an
`ImageEncoder` (convolutions, then one learned position per feature-map
cell) turns them into a sequence of visual features that takes the place of
the embedded source tokens; every feature is a valid key. The decoders, their
caches and the searches are the same.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from aelab.errors import UsageError, choose
from aelab.models.architectures import Seq2SeqSpec
from aelab.models.conv import feature_shape
from aelab.models.layers import Dense, on_rows
from aelab.registry import register_architecture
from aelab.text.tokenizer import PAD

NEG = -1e9  # a finite "minus infinity": a row with every key masked stays finite
DROPOUT_LEVELS = 2 ** 16


def _mix32(h: jax.Array) -> jax.Array:
    """murmur3's 32-bit finalizer: a bijection of uint32 in which every output bit depends on
    every input bit."""
    h = (h ^ (h >> 16)) * jnp.uint32(0x85EBCA6B)
    h = (h ^ (h >> 13)) * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def dropout_bits(key: jax.Array, n: int) -> jax.Array:
    """n random uint32 words for one dropout mask: a counter hashed twice under two words that
    threefry draws from `key`. A mask needs independent-looking bits, not threefry's twenty
    rounds per word, which were most of what dropout cost on a CPU."""
    seed = jax.random.bits(key, (2,), jnp.uint32)
    return _mix32(_mix32(jax.lax.iota(jnp.uint32, n) ^ seed[0]) + seed[1])


def dropout(x: jax.Array, rate: float, rng: jax.Array | None) -> jax.Array:
    """Inverted dropout; the identity at evaluation (rng None) or rate 0.

    A unit is dropped with probability round(rate * 2^16) / 2^16 (within 8e-6 of `rate`): its
    draw is a 16-bit number, two from each 32-bit word of `dropout_bits`."""
    threshold = round(rate * DROPOUT_LEVELS)
    if rng is None or threshold == 0:
        return x
    words = dropout_bits(rng, (x.size + 1) // 2)
    draws = jax.lax.bitcast_convert_type(words, jnp.uint16).reshape(-1)[: x.size].reshape(x.shape)
    return jnp.where(draws >= threshold, x * (DROPOUT_LEVELS / (DROPOUT_LEVELS - threshold)), 0.0)


class Rng:
    """Hands out a fresh key per dropout site from one step key (None at evaluation)."""

    def __init__(self, key: jax.Array | None):
        self.key, self.count = key, 0

    def __call__(self) -> jax.Array | None:
        if self.key is None:
            return None
        self.count += 1
        return jax.random.fold_in(self.key, self.count)


def sinusoidal_positions(length: int, dim: int) -> np.ndarray:
    """Vaswani et al. (2017) position encodings, (length, dim)."""
    position = np.arange(length)[:, None]
    scale = np.exp(-math.log(10000.0) * np.arange(0, dim, 2) / dim)
    table = np.zeros((length, dim), np.float32)
    table[:, 0::2] = np.sin(position * scale)
    table[:, 1::2] = np.cos(position * scale[: dim // 2])
    return table


def causal_mask(length: int) -> jax.Array:
    """(1, 1, T, T): query t may attend to keys 0..t only."""
    return jnp.tril(jnp.ones((length, length), bool))[None, None]


def key_mask(tokens: jax.Array) -> jax.Array:
    """(B, 1, 1, S): keys that are not PAD."""
    return (tokens != PAD)[:, None, None, :]


class MultiHeadAttention(nnx.Module):
    def __init__(self, dim: int, heads: int, *, rngs: nnx.Rngs):
        if dim % heads:
            raise ValueError(f"model.embed_dim={dim} must be divisible by model.num_heads={heads}")
        self.heads = heads
        self.query, self.key, self.value, self.out = (Dense(dim, dim, rngs=rngs) for _ in range(4))

    def _heads(self, y: jax.Array) -> jax.Array:
        b, n, d = y.shape
        return y.reshape(b, n, self.heads, d // self.heads)

    def keys_values(self, context: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(keys, values), each (B, S, heads, head_dim)."""
        return self._heads(self.key(context)), self._heads(self.value(context))

    def attend(self, x: jax.Array, keys: jax.Array, values: jax.Array, mask: jax.Array) -> jax.Array:
        b, t, d = x.shape
        out = jax.nn.dot_product_attention(self._heads(self.query(x)), keys, values, mask=mask)
        return self.out(out.reshape(b, t, d))

    def __call__(self, x: jax.Array, context: jax.Array, mask: jax.Array) -> jax.Array:
        return self.attend(x, *self.keys_values(context), mask)


def with_coordinates(images: jax.Array) -> jax.Array:
    """Two more channels holding each pixel's row and column in [-1, 1] (CoordConv, Liu et al.
    2018): every convolutional feature then knows where it is, which captions that say where
    things are ("to the left of") need."""
    b, h, w, _ = images.shape
    rows = jnp.broadcast_to(jnp.linspace(-1.0, 1.0, h, dtype=images.dtype)[None, :, None, None], (b, h, w, 1))
    columns = jnp.broadcast_to(jnp.linspace(-1.0, 1.0, w, dtype=images.dtype)[None, None, :, None], (b, h, w, 1))
    return jnp.concatenate([images, rows, columns], axis=-1)


class ImageEncoder(nnx.Module):
    """Images (B, H, W, C) -> visual features (B, h * w, dim): coordinate channels, stride-2 3x3
    convolutions with ReLU, a linear map to `dim`, and a learned position per cell of the
    feature map (the decoder's attention must know where in the image a feature comes from)."""

    def __init__(self, image_shape, channels, dim: int, *, rngs: nnx.Rngs):
        widths = (image_shape[-1] + 2, *channels)
        self.convs = nnx.List([nnx.Conv(a, b, (3, 3), strides=2, padding="SAME", rngs=rngs)
                               for a, b in zip(widths[:-1], widths[1:])])
        height, width, _ = feature_shape(image_shape, channels, (2,) * len(channels))
        self.project = Dense(widths[-1], dim, rngs=rngs)
        self.positions = nnx.Param(nnx.initializers.normal(0.02)(rngs.params(), (height * width, dim)))

    def __call__(self, images: jax.Array) -> jax.Array:
        x = with_coordinates(images)
        for conv in self.convs:
            x = jax.nn.relu(conv(x))
        return self.project(x.reshape(x.shape[0], -1, x.shape[-1])) + self.positions[...]


def all_valid(features: jax.Array) -> jax.Array:
    """(B, S): every visual feature is a real key."""
    return jnp.ones(features.shape[:2], bool)


class FeedForward(nnx.Module):
    def __init__(self, dim: int, hidden: int, *, rngs: nnx.Rngs):
        self.up, self.down = Dense(dim, hidden, rngs=rngs), Dense(hidden, dim, rngs=rngs)

    def __call__(self, x, rate, rng: Rng):
        return self.down(dropout(jax.nn.relu(self.up(x)), rate, rng()))


class EncoderLayer(nnx.Module):
    """Pre-norm: x + Attn(LN(x)), then x + FF(LN(x))."""

    def __init__(self, dim, heads, hidden, *, rngs):
        self.norm1, self.norm2 = nnx.LayerNorm(dim, rngs=rngs), nnx.LayerNorm(dim, rngs=rngs)
        self.attention = MultiHeadAttention(dim, heads, rngs=rngs)
        self.ff = FeedForward(dim, hidden, rngs=rngs)

    def __call__(self, x, mask, rate, rng: Rng):
        h = self.norm1(x)
        x = x + dropout(self.attention(h, h, mask), rate, rng())
        return x + dropout(self.ff(self.norm2(x), rate, rng), rate, rng())


class DecoderLayer(nnx.Module):
    """Pre-norm: causal self-attention, cross-attention to the encoder, feed-forward."""

    def __init__(self, dim, heads, hidden, *, rngs):
        self.norms = nnx.List([nnx.LayerNorm(dim, rngs=rngs) for _ in range(3)])
        self.self_attention = MultiHeadAttention(dim, heads, rngs=rngs)
        self.cross_attention = MultiHeadAttention(dim, heads, rngs=rngs)
        self.ff = FeedForward(dim, hidden, rngs=rngs)

    def __call__(self, y, memory, self_mask, cross_mask, rate, rng: Rng):
        h = self.norms[0](y)
        y = y + dropout(self.self_attention(h, h, self_mask), rate, rng())
        y = y + dropout(self.cross_attention(self.norms[1](y), memory, cross_mask), rate, rng())
        return y + dropout(self.ff(self.norms[2](y), rate, rng), rate, rng())

    def init_cache(self, memory, length: int) -> dict:
        b, _, d = memory.shape
        heads = self.self_attention.heads
        empty = jnp.zeros((b, length, heads, d // heads), memory.dtype)
        return {"keys": empty, "values": empty}

    def step(self, y, cache: dict, t, cross: tuple, cross_mask):
        """The layer on the one position t (y: (B, 1, D)), attending to cached positions 0..t."""
        h = self.norms[0](y)
        k, v = self.self_attention.keys_values(h)
        cache = dict(cache, keys=jax.lax.dynamic_update_slice_in_dim(cache["keys"], k, t, axis=1),
                     values=jax.lax.dynamic_update_slice_in_dim(cache["values"], v, t, axis=1))
        seen = (jnp.arange(cache["keys"].shape[1]) <= t)[None, None, None, :]
        y = y + self.self_attention.attend(h, cache["keys"], cache["values"], seen)
        y = y + self.cross_attention.attend(self.norms[1](y), *cross, cross_mask)
        return y + self.ff(self.norms[2](y), 0.0, Rng(None)), cache


class Transformer(nnx.Module):
    """Pre-norm Transformer encoder–decoder (Vaswani et al. 2017; Xiong et al. 2020 for pre-norm),
    sinusoidal or learned positions, one embedding shared by source, target and output
    projection or three separate ones."""

    def __init__(self, vocab_size: int, max_length: int, dim: int = 256, heads: int = 4,
                 layers: int = 3, hidden: int = 1024, dropout_rate: float = 0.1,
                 positions: str = "sinusoidal", share_embeddings: bool = True,
                 image_encoder: ImageEncoder | None = None, *, rngs: nnx.Rngs):
        self.dim, self.rate, self.share = dim, dropout_rate, share_embeddings
        self.image_encoder = image_encoder  # captioning: images replace the source tokens
        init = nnx.initializers.normal(dim ** -0.5)
        self.source_embed = nnx.Embed(vocab_size, dim, embedding_init=init, rngs=rngs)
        if not share_embeddings:
            self.target_embed = nnx.Embed(vocab_size, dim, embedding_init=init, rngs=rngs)
            self.project = Dense(dim, vocab_size, rngs=rngs)
        if positions == "learned":
            self.positions = nnx.Param(nnx.initializers.normal(0.02)(rngs.params(), (max_length, dim)))
        else:
            self.positions = nnx.Variable(jnp.asarray(sinusoidal_positions(max_length, dim)))
        self.encoder = nnx.List([EncoderLayer(dim, heads, hidden, rngs=rngs) for _ in range(layers)])
        self.decoder = nnx.List([DecoderLayer(dim, heads, hidden, rngs=rngs) for _ in range(layers)])
        self.encoder_norm, self.decoder_norm = nnx.LayerNorm(dim, rngs=rngs), nnx.LayerNorm(dim, rngs=rngs)

    def _embed(self, embed: nnx.Embed, tokens, rng: Rng):
        x = embed(tokens) * math.sqrt(self.dim) + self.positions[...][: tokens.shape[1]]
        return dropout(x, self.rate, rng())

    def _target_embed(self) -> nnx.Embed:
        return self.source_embed if self.share else self.target_embed

    def _encode(self, source, rng: Rng) -> dict:
        if self.image_encoder is not None:
            x = dropout(self.image_encoder(source), self.rate, rng())
            mask = all_valid(x)[:, None, None, :]
        else:
            mask = key_mask(source)
            x = self._embed(self.source_embed, source, rng)
        for layer in self.encoder:
            x = layer(x, mask, self.rate, rng)
        return {"states": self.encoder_norm(x), "mask": mask}

    def _logits(self, y):
        y = self.decoder_norm(y)
        return on_rows(self._target_embed().attend, y) if self.share else self.project(y)

    def _decode(self, memory: dict, target_in, rng: Rng):
        self_mask = causal_mask(target_in.shape[1]) & key_mask(target_in)
        self_mask = self_mask | jnp.eye(target_in.shape[1], dtype=bool)  # a query always sees itself
        y = self._embed(self._target_embed(), target_in, rng)
        for layer in self.decoder:
            y = layer(y, memory["states"], self_mask, memory["mask"], self.rate, rng)
        return self._logits(y)

    def __call__(self, source, target_in, dropout_rng=None):
        rng = Rng(dropout_rng)
        return self._decode(self._encode(source, rng), target_in, rng)

    def encode(self, source) -> dict:
        memory = self._encode(source, Rng(None))
        memory["cross"] = [layer.cross_attention.keys_values(memory["states"]) for layer in self.decoder]
        return memory

    def teacher_forced(self, memory: dict, target_in) -> jax.Array:
        """Logits (B, T, V) for `target_in` given `encode`'s memory, without dropout."""
        return self._decode(memory, target_in, Rng(None))

    def init_cache(self, memory: dict, length: int) -> list:
        return [layer.init_cache(memory["states"], length) for layer in self.decoder]

    def decode_step(self, memory: dict, cache: list, tokens, t):
        token = jax.lax.dynamic_slice_in_dim(tokens, t, 1, axis=1)
        position = jax.lax.dynamic_slice_in_dim(self.positions[...], t, 1, axis=0)
        y = self._target_embed()(token) * math.sqrt(self.dim) + position
        new_cache = []
        for layer, layer_cache, cross in zip(self.decoder, cache, memory["cross"]):
            y, layer_cache = layer.step(y, layer_cache, t, cross, memory["mask"])
            new_cache.append(layer_cache)
        return self._logits(y)[:, 0], new_cache


CELLS = {"gru": nnx.GRUCell, "lstm": nnx.OptimizedLSTMCell}


class AttentionRNN(nnx.Module):
    """Bidirectional GRU/LSTM encoder; a GRU/LSTM decoder attending to it at every step
    with additive (Bahdanau et al. 2015) or dot-product (Luong et al. 2015) attention."""

    def __init__(self, vocab_size: int, embed_dim: int = 256, hidden: int = 512, layers: int = 1,
                 cell: str = "gru", attention: str = "additive", dropout_rate: float = 0.1,
                 share_embeddings: bool = True, image_encoder: ImageEncoder | None = None, *,
                 rngs: nnx.Rngs):
        self.cell_kind, self.attention_kind, self.rate, self.share = cell, attention, dropout_rate, share_embeddings
        self.image_encoder = image_encoder  # captioning: its features (dim 2 * hidden) replace the bi-RNN's
        self.hidden = hidden
        make = CELLS[cell]
        self.source_embed = nnx.Embed(vocab_size, embed_dim, rngs=rngs)
        if not share_embeddings:
            self.target_embed = nnx.Embed(vocab_size, embed_dim, rngs=rngs)
        # rngs=False: no random state in the scans (dropout is ours), so checkpoints hold parameters only.
        scan = lambda i: nnx.RNN(make(embed_dim if i == 0 else 2 * hidden, hidden, rngs=rngs), rngs=False)
        self.encoder = nnx.List([nnx.Bidirectional(scan(i), scan(i), rngs=False)
                                 for i in range(0 if image_encoder else layers)])
        self.memory_proj = Dense(2 * hidden, hidden, rngs=rngs)
        self.init_proj = Dense(hidden, hidden, rngs=rngs)
        self.query_proj = Dense(hidden, hidden, use_bias=False, rngs=rngs)
        if attention == "additive":
            self.key_proj = Dense(hidden, hidden, rngs=rngs)
            self.score = Dense(hidden, 1, use_bias=False, rngs=rngs)
        self.cell = make(embed_dim + hidden, hidden, rngs=rngs)
        self.output_proj = Dense(2 * hidden + embed_dim, embed_dim, rngs=rngs)
        self.project = Dense(embed_dim, vocab_size, rngs=rngs)

    def _target_embed(self) -> nnx.Embed:
        return self.source_embed if self.share else self.target_embed

    def _encode(self, source, rng: Rng) -> dict:
        if self.image_encoder is not None:
            x = dropout(self.image_encoder(source), self.rate, rng())
            valid = all_valid(x)
        else:
            valid = source != PAD
            x = dropout(self.source_embed(source), self.rate, rng())
        lengths = valid.sum(-1)
        zeros = jnp.zeros((source.shape[0], self.hidden), x.dtype)
        start = (zeros, zeros) if self.cell_kind == "lstm" else zeros
        for layer in self.encoder:
            x = dropout(layer(x, seq_lengths=lengths, initial_carry=(start, start)), self.rate, rng())
        states = self.memory_proj(x)
        mean = (states * valid[..., None]).sum(1) / jnp.maximum(lengths, 1)[:, None]
        memory = {"states": states, "valid": valid, "init": jnp.tanh(self.init_proj(mean))}
        if self.attention_kind == "additive":
            memory["keys"] = self.key_proj(states)  # computed once, not at every step
        return memory

    def _attend(self, memory: dict, h):
        """Context (B, H) from the decoder state h (B, H); PAD keys get no weight."""
        q = self.query_proj(h)
        if self.attention_kind == "additive":
            scores = self.score(jnp.tanh(memory["keys"] + q[:, None, :]))[..., 0]
        else:
            scores = jnp.einsum("bsh,bh->bs", memory["states"], q) / math.sqrt(self.hidden)
        weights = jax.nn.softmax(jnp.where(memory["valid"], scores, NEG), axis=-1)
        return jnp.einsum("bs,bsh->bh", weights, memory["states"])

    def _initial_carry(self, memory: dict):
        h = memory["init"]
        return (jnp.zeros_like(h), h) if self.cell_kind == "lstm" else h

    def _hidden(self, carry):
        return carry[1] if self.cell_kind == "lstm" else carry

    def _step(self, memory: dict, carry, token, rng_key):
        """One decoder step: (new carry, logits of the next token)."""
        rng = Rng(rng_key)
        e = dropout(self._target_embed()(token), self.rate, rng())
        context = self._attend(memory, self._hidden(carry))
        carry, h = self.cell(carry, jnp.concatenate([e, context], -1))
        out = jnp.tanh(self.output_proj(jnp.concatenate([h, context, e], -1)))
        return carry, self.project(dropout(out, self.rate, rng()))

    def _decode(self, memory: dict, target_in, rng: Rng):
        key = rng()
        keys = None if key is None else jax.random.split(key, target_in.shape[1])

        def body(carry, inputs):
            token, key = inputs
            return self._step(memory, carry, token, key)

        _, logits = jax.lax.scan(body, self._initial_carry(memory), (target_in.T, keys))
        return jnp.swapaxes(logits, 0, 1)

    def __call__(self, source, target_in, dropout_rng=None):
        rng = Rng(dropout_rng)
        return self._decode(self._encode(source, rng), target_in, rng)

    def encode(self, source) -> dict:
        return self._encode(source, Rng(None))

    def teacher_forced(self, memory: dict, target_in) -> jax.Array:
        """Logits (B, T, V) for `target_in` given `encode`'s memory, without dropout."""
        return self._decode(memory, target_in, Rng(None))

    def init_cache(self, memory: dict, length: int):
        return self._initial_carry(memory)

    def decode_step(self, memory: dict, cache, tokens, t):
        token = jax.lax.dynamic_index_in_dim(tokens, t, axis=1, keepdims=False)
        cache, logits = self._step(memory, cache, token, None)
        return logits, cache


def check_transformer(cfg, example_shape) -> None:
    if cfg.embed_dim < 1 or cfg.num_heads < 1 or cfg.embed_dim % cfg.num_heads:
        raise UsageError(f"model.transformer.embed_dim={cfg.embed_dim} must be divisible by "
                         f"model.transformer.num_heads={cfg.num_heads}")
    if cfg.num_layers < 1 or cfg.mlp_dim < 1 or not 0 <= cfg.dropout < 1:
        raise UsageError(f"model.transformer.num_layers={cfg.num_layers} and mlp_dim={cfg.mlp_dim} must be >= 1, "
                         f"dropout={cfg.dropout} in [0, 1)")
    choose("model.transformer.positions", cfg.positions, ("sinusoidal", "learned"))


@register_architecture("transformer", family="seq2seq", check=check_transformer, config={
    "embed_dim": 256,  # token embeddings and the model width
    "num_layers": 3,  # layers of the encoder and of the decoder
    "num_heads": 4,
    "mlp_dim": 1024,  # feed-forward width
    "dropout": 0.1,
    "positions": "sinusoidal",  # sinusoidal | learned
    "share_embeddings": True,  # one embedding for source, target and the output projection
})
def build_transformer(cfg, spec: Seq2SeqSpec) -> Transformer:
    encoder = (ImageEncoder(spec.image_shape, spec.image_channels, cfg.embed_dim, rngs=spec.rngs)
               if spec.image_shape else None)
    return Transformer(spec.vocab_size, spec.max_length + 1, cfg.embed_dim, cfg.num_heads, cfg.num_layers,
                       cfg.mlp_dim, cfg.dropout, cfg.positions, cfg.share_embeddings, encoder, rngs=spec.rngs)


def check_rnn(cfg, example_shape) -> None:
    if cfg.embed_dim < 1 or cfg.hidden_dim < 1 or cfg.num_layers < 1 or not 0 <= cfg.dropout < 1:
        raise UsageError(f"model.rnn.embed_dim={cfg.embed_dim}, hidden_dim={cfg.hidden_dim} and num_layers="
                         f"{cfg.num_layers} must be >= 1, dropout={cfg.dropout} in [0, 1)")
    choose("model.rnn.cell", cfg.cell, ("gru", "lstm"))
    choose("model.rnn.attention", cfg.attention, ("additive", "dot"))


@register_architecture("rnn", family="seq2seq", check=check_rnn, config={
    "embed_dim": 256,  # token embeddings
    "hidden_dim": 512,  # GRU/LSTM state size
    "num_layers": 3,  # encoder layers
    "dropout": 0.1,
    "cell": "gru",  # gru | lstm
    "attention": "additive",  # additive (Bahdanau) | dot (Luong, scaled)
    "share_embeddings": True,  # one embedding for source and target
})
def build_rnn(cfg, spec: Seq2SeqSpec) -> AttentionRNN:
    encoder = (ImageEncoder(spec.image_shape, spec.image_channels, 2 * cfg.hidden_dim, rngs=spec.rngs)
               if spec.image_shape else None)
    return AttentionRNN(spec.vocab_size, cfg.embed_dim, cfg.hidden_dim, cfg.num_layers, cfg.cell, cfg.attention,
                        cfg.dropout, cfg.share_embeddings, encoder, rngs=spec.rngs)

"""Greedy and beam-search decoding, compiled: fixed shapes and a `lax.while_loop`.

Both take a model with the seq2seq interface (aelab.models.seq2seq) and a
batch of source rows, and return (B, max_length) token rows, EOS-terminated
and PAD after EOS. They stop early once every row has finished.

Beam search keeps two sets of K per example: `alive` beams and `finished`
ones. Each step takes the K best continuations of the alive beams; those that
end in EOS join the finished set, scored by log-probability over the GNMT
length penalty ((5 + length) / 6) ** alpha (Wu et al. 2016), and the others
stay alive (the beam narrows as hypotheses end). It stops when no alive beam
can beat the worst finished one. With beam size 1 it is exactly greedy.
PAD and BOS are never generated.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from aelab.text.tokenizer import BOS, EOS, PAD

NEG_INF = -1.0e9


def _buffer(batch: int, max_length: int) -> jax.Array:
    """(batch, max_length + 1) with BOS first: position t holds the input of step t."""
    return jnp.full((batch, max_length + 1), PAD, jnp.int32).at[:, 0].set(BOS)


def _next_token_logits(model, memory, cache, tokens, t):
    logits, cache = model.decode_step(memory, cache, tokens, t)
    return logits.at[:, PAD].set(NEG_INF).at[:, BOS].set(NEG_INF), cache


def greedy(model, source: jax.Array, max_length: int) -> jax.Array:
    memory = model.encode(source)
    batch = source.shape[0]

    def cond(state):
        t, _, _, done = state
        return (t < max_length) & ~jnp.all(done)

    def body(state):
        t, tokens, cache, done = state
        logits, cache = _next_token_logits(model, memory, cache, tokens, t)
        token = jnp.where(done, PAD, jnp.argmax(logits, -1).astype(jnp.int32))
        tokens = tokens.at[:, t + 1].set(token)
        return t + 1, tokens, cache, done | (token == EOS)

    state = (0, _buffer(batch, max_length), model.init_cache(memory, max_length + 1),
             jnp.zeros(batch, bool))
    return jax.lax.while_loop(cond, body, state)[1][:, 1:]


def length_penalty(length, alpha: float):
    return ((5.0 + length) / 6.0) ** alpha


def _gather(tree, index):
    """Rows `index` (B, K') of every (B * K, ...) leaf -> (B * K', ...)."""
    batch, keep = index.shape

    def take(leaf):
        leaf = leaf.reshape(batch, -1, *leaf.shape[1:])
        picked = jnp.take_along_axis(leaf, index.reshape(batch, keep, *([1] * (leaf.ndim - 2))), axis=1)
        return picked.reshape(batch * keep, *leaf.shape[2:])

    return jax.tree.map(take, tree)


def encode_repeated(model, source: jax.Array, k: int) -> dict:
    """`model.encode(source)` with each row's memory repeated k times: rows b*k .. b*k+k-1 are row b's."""
    return jax.tree.map(lambda x: jnp.repeat(x, k, axis=0), model.encode(source))


def beam_search(model, source: jax.Array, max_length: int, beam_size: int = 4,
                alpha: float = 0.6) -> jax.Array:
    """The highest-scoring beam of each row; a beam cut at max_length competes as if it ended there."""
    batch, k = source.shape[0], beam_size
    memory = encode_repeated(model, source, k)
    tokens = _buffer(batch * k, max_length).reshape(batch, k, max_length + 1)
    # Only beam 0 is alive at first, so the K first candidates are K distinct tokens.
    alive_logp = jnp.tile(jnp.array([0.0] + [NEG_INF] * (k - 1)), (batch, 1))
    state = dict(t=0, alive=tokens, alive_logp=alive_logp, cache=model.init_cache(memory, max_length + 1),
                 finished=tokens, finished_score=jnp.full((batch, k), NEG_INF))

    def cond(s):
        # No alive beam can beat the worst finished one: log-probabilities only fall,
        # and the length penalty is at most that of max_length.
        best_alive = s["alive_logp"][:, 0] / length_penalty(max_length, alpha)
        worst_finished = jnp.min(s["finished_score"], axis=1)
        hopeless = (s["alive_logp"][:, 0] < NEG_INF / 2) | (best_alive < worst_finished)
        return (s["t"] < max_length) & ~jnp.all(hopeless)

    def body(s):
        t = s["t"]
        logits, cache = _next_token_logits(model, memory, s["cache"], s["alive"].reshape(batch * k, -1), t)
        vocab = logits.shape[-1]
        logp = jax.nn.log_softmax(logits).reshape(batch, k, vocab) + s["alive_logp"][..., None]
        top_logp, top_index = jax.lax.top_k(logp.reshape(batch, k * vocab), k)
        origin, token = top_index // vocab, (top_index % vocab).astype(jnp.int32)
        candidates = jnp.take_along_axis(s["alive"], origin[..., None], axis=1)
        candidates = candidates.at[:, :, t + 1].set(token)
        ended = token == EOS
        # The best candidates that did not end stay alive (sorted, ended ones dead)...
        alive_logp, pick = jax.lax.top_k(jnp.where(ended, NEG_INF, top_logp), k)
        alive_logp = jnp.where(alive_logp < NEG_INF / 2, 2 * NEG_INF, alive_logp)  # dead stays dead
        alive = jnp.take_along_axis(candidates, pick[..., None], axis=1)
        cache = _gather(cache, jnp.take_along_axis(origin, pick, axis=1))
        # ...and those that ended compete with the finished ones, length-normalized.
        score = jnp.where(ended, top_logp / length_penalty(t + 1, alpha), NEG_INF)
        finished_score, pick = jax.lax.top_k(jnp.concatenate([s["finished_score"], score], 1), k)
        finished = jnp.take_along_axis(jnp.concatenate([s["finished"], candidates], 1), pick[..., None], axis=1)
        return dict(t=t + 1, alive=alive, alive_logp=alive_logp, cache=cache, finished=finished,
                    finished_score=finished_score)

    s = jax.lax.while_loop(cond, body, state)
    # The best alive beam (cut at max_length, or unable to win) competes as if it ended here.
    alive_score = s["alive_logp"][:, 0] / length_penalty(s["t"], alpha)
    use_alive = alive_score > s["finished_score"][:, 0]
    best = jnp.where(use_alive[:, None], s["alive"][:, 0], s["finished"][:, 0])
    return best[:, 1:]

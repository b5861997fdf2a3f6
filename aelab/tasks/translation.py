"""Machine translation: a sentence in, a sentence out, with an attention RNN or a Transformer.

Text pairs are tokenized with a SentencePiece model trained on the training
split (both sides, one vocabulary) and saved in the workdir as
tokenizer.model, so a checkpoint is self-contained. Training is teacher-forced
cross-entropy with label smoothing, PAD masked out. Units: `loss` and `nll`
are nats per target token (loss with smoothing, nll without), `perplexity`
is exp(nll), `token_accuracy` a fraction of target tokens.

Evaluation also decodes: greedy on the first `decode.eval_examples`
validation pairs during training, beam search on the whole test split at
the end, scored by sacreBLEU (BLEU and chrF on detokenized text against the
untouched references). Every evaluation writes its sample translations to
DIR/samples/.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from aelab import compiler
from aelab import workdir as wd
from aelab.data import Dataset, eval_batches
from aelab.data.text import TextPairs, TextSplit, tokenize
from aelab.errors import UsageError, choose
from aelab.models.seq2seq import AttentionRNN, Transformer
from aelab.text import decode, tokenizer as tok

ARCHITECTURES = ("rnn", "transformer")
TOKENIZER = "tokenizer.model"
UNITS = {"loss": "nats per target token, label-smoothed", "nll": "nats per target token",
         "bleu": "sacreBLEU, 0-100", "chrf": "sacreBLEU chrF, 0-100", "token_accuracy": "fraction"}


def shift_right(target: jax.Array) -> jax.Array:
    """Teacher forcing: the decoder reads BOS, y1, ..., y_{n-1} and predicts y1, ..., yn."""
    return jnp.concatenate([jnp.full_like(target[:, :1], tok.BOS), target[:, :-1]], axis=1)


def token_losses(logits, target, label_smoothing: float):
    """(smoothed cross-entropy, cross-entropy, correct) per target token, and the 0/1 mask of real tokens."""
    vocab = logits.shape[-1]
    onehot = jax.nn.one_hot(target, vocab)
    smoothed = optax.softmax_cross_entropy(logits, optax.smooth_labels(onehot, label_smoothing))
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, target)
    correct = (jnp.argmax(logits, -1) == target).astype(jnp.float32)
    return smoothed, nll, correct, (target != tok.PAD).astype(jnp.float32)


def corpus_scores(hypotheses: list[str], references: list[str]) -> dict[str, float]:
    import sacrebleu

    return {"bleu": sacrebleu.corpus_bleu(hypotheses, [references]).score,
            "chrf": sacrebleu.corpus_chrf(hypotheses, [references]).score}


class TranslationTask:
    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        choose("loss", config.loss, ("cross_entropy",))
        choose("model.arch", config.model.arch, ARCHITECTURES)
        t, d = config.text, config.decode
        if t.max_length < 2:
            raise UsageError(f"text.max_length={t.max_length} must be >= 2 (a token and EOS)")
        if t.vocab_size < 8:
            raise UsageError(f"text.vocab_size={t.vocab_size} must be >= 8")
        if not 0.0 <= t.label_smoothing < 1.0:
            raise UsageError(f"text.label_smoothing={t.label_smoothing} must be in [0, 1)")
        if any(b < 1 or b > t.max_length for b in t.buckets):
            raise UsageError(f"text.buckets={tuple(t.buckets)} must lie in 1..text.max_length={t.max_length}")
        self.bucket_lengths = tuple(sorted(set(t.buckets) | {t.max_length})) if t.buckets else ()
        if d.beam_size < 1 or d.eval_examples < 0:
            raise UsageError(f"decode.beam_size={d.beam_size} must be >= 1 and "
                             f"decode.eval_examples={d.eval_examples} >= 0")
        if config.model.arch == "transformer" and config.model.embed_dim % config.model.num_heads:
            raise UsageError(f"model.embed_dim={config.model.embed_dim} must be divisible by "
                             f"model.num_heads={config.model.num_heads}")
        choose("model.cell", config.model.cell, ("gru", "lstm"))
        choose("model.attention", config.model.attention, ("additive", "dot"))
        choose("model.positions", config.model.positions, ("sinusoidal", "learned"))
        self.tokenizer: tok.Tokenizer | None = None
        self._decoders = {}  # beam size -> compiled decoder: evaluations reuse it, not recompile

    # Assets: the tokenizer lives in the workdir beside the checkpoints.
    def load_assets(self, workdir: str) -> None:
        path = os.path.join(workdir, TOKENIZER)
        if os.path.exists(path):
            with open(path, "rb") as f:
                self.tokenizer = tok.Tokenizer(f.read())

    def save_assets(self, workdir: str) -> None:
        path = os.path.join(workdir, TOKENIZER)
        if not os.path.exists(path):
            wd.atomic_write(path, self.tokenizer.model_proto)

    def prepare(self, dataset: Dataset) -> Dataset:
        """Trains the tokenizer on the training pairs (unless the workdir had one) and tokenizes."""
        if not isinstance(dataset.train, TextPairs):
            raise UsageError(f"task=translation needs sentence pairs, but {dataset.name} holds images; "
                             "use textpairs:FILE or a TFDS translation set with data.source_key/target_key")

        def tokenize_split(split, tokenizer, max_length):
            tokenized, skipped = tokenize(split, tokenizer, max_length)
            return tokenized, {"skipped_longer_than_max_length": skipped}

        return self.tokenized(dataset, [*dataset.train.source, *dataset.train.target], tokenize_split, "pair")

    def tokenized(self, dataset: Dataset, training_text, tokenize_split, what: str) -> Dataset:
        """The dataset with every split tokenized by `tokenize_split(split, tokenizer, max_length)
        -> (split, counts)`; the tokenizer is trained on `training_text` unless the workdir had one.
        The counts land in the dataset's info (summary.json), prefixed by the split's name."""
        t = self.config.text
        if self.tokenizer is None:
            self.tokenizer = tok.Tokenizer(tok.train(training_text, t.vocab_size, t.tokenizer))
        splits, info = {}, dict(dataset.info)
        for name in ("train", "val", "test"):
            splits[name], counts = tokenize_split(dataset.split(name), self.tokenizer, t.max_length)
            info.update({f"{name}_{k}": v for k, v in counts.items()})
            if not len(splits[name]):
                raise UsageError(f"{dataset.name}: every {name} {what} is longer than text.max_length="
                                 f"{t.max_length} tokens; raise it")
        return Dataset(dataset.name, splits["train"], splits["val"], splits["test"], info)

    def build_model(self, example_shape, rngs: nnx.Rngs):
        m, vocab = self.config.model, self.tokenizer.vocab_size
        if m.arch == "transformer":
            return Transformer(vocab, self.config.text.max_length + 1, m.embed_dim, m.num_heads, m.num_layers,
                               m.mlp_dim, m.dropout, m.positions, m.share_embeddings, rngs=rngs)
        return AttentionRNN(vocab, m.embed_dim, m.hidden_dim, m.num_layers, m.cell, m.attention, m.dropout,
                            m.share_embeddings, rngs=rngs)

    def loss_fn(self, model, batch, rng: jax.Array, step):
        target = batch["target"]
        logits = model(batch["source"], shift_right(target), dropout_rng=rng)
        smoothed, nll, correct, real = token_losses(logits, target, self.config.text.label_smoothing)
        tokens = jnp.maximum(real.sum(), 1.0)
        loss = (smoothed * real).sum() / tokens
        return loss, {"loss": loss, "nll": (nll * real).sum() / tokens,
                      "token_accuracy": (correct * real).sum() / tokens}

    def eval_metrics(self, model, batch, rng: jax.Array, final: bool):
        """Per-example token sums; summarize divides them, so the split's figures are per token."""
        target = batch["target"]
        logits = model(batch["source"], shift_right(target))
        smoothed, nll, correct, real = token_losses(logits, target, self.config.text.label_smoothing)
        return {"loss_sum": (smoothed * real).sum(1), "nll_sum": (nll * real).sum(1),
                "correct": (correct * real).sum(1), "tokens": real.sum(1)}

    def summarize(self, means: dict[str, np.ndarray]) -> dict[str, float]:
        tokens = float(means["tokens"])
        nll = float(means["nll_sum"]) / tokens
        return {"loss": float(means["loss_sum"]) / tokens, "nll": nll, "perplexity": float(np.exp(nll)),
                "token_accuracy": float(means["correct"]) / tokens}

    def baselines(self, dataset: Dataset) -> dict[str, dict[str, float]]:
        """Copying the source as the translation: the floor any model must clear."""
        return {"copy_source": corpus_scores(list(dataset.test.source_text), list(dataset.test.target_text))}

    # Decoding.
    def translator(self, model, beam_size: int | None = None):
        """`translate(token rows (N, max_length), batch_size) -> list of str`; greedy for
        beam_size 1, beam search otherwise. The decoder is compiled once per beam size and batch
        shape (a task builds one model structure, so its graphdef never changes)."""
        d, max_length = self.config.decode, self.config.text.max_length
        beam_size = d.beam_size if beam_size is None else beam_size
        graphdef, state = nnx.split(model)
        if beam_size not in self._decoders:
            if beam_size == 1:
                search = lambda m, src: decode.greedy(m, src, max_length)  # noqa: E731
            else:
                search = lambda m, src: decode.beam_search(m, src, max_length, beam_size,  # noqa: E731
                                                           d.length_penalty)
            ynn_dots = compiler.ynn_dots_for(self.config.train.cpu_ynn_dots, "decode",
                                             compiler.has_convolutions(model))
            self._decoders[beam_size] = compiler.jit(lambda state, src: search(nnx.merge(graphdef, state), src),
                                                     ynn_dots=ynn_dots)
        run = self._decoders[beam_size]

        def translate(source: np.ndarray, batch_size: int) -> list[str]:
            out = []
            for batch in eval_batches({"source": source}, batch_size):
                ids = np.asarray(run(state, batch["source"]))[:int(batch["mask"].sum())]
                out += self.tokenizer.decode(ids)
            return out

        return translate

    def generation_metrics(self, model, split: TextSplit, final: bool, samples_path: str | None):
        """BLEU and chrF of decoded translations: greedy on the first decode.eval_examples pairs
        during training, the configured beam on the whole split at the end."""
        d = self.config.decode
        if not final:
            if not d.eval_examples:
                return {}
            split = split.take(np.arange(min(d.eval_examples, len(split))))
        hypotheses = self.translator(model, d.beam_size if final else 1)(
            split.source, self.config.train.eval_batch_size)
        scores = corpus_scores(hypotheses, list(split.target_text))
        if samples_path:
            lines = [f"source\t{s}\nreference\t{r}\nmodel\t{h}\n"
                     for s, r, h in zip(split.source_text, split.target_text, hypotheses)]
            wd.atomic_write(samples_path, "\n".join(lines).encode("utf-8"))
        return scores

    def figures(self, model, dataset: Dataset, records, figure_dir: str, baselines=None) -> None:
        from aelab import plots

        plots.curves(records, "nll", os.path.join(figure_dir, "nll.png"), f"nll ({UNITS['nll']})")
        if any("bleu" in r for r in records):
            reference = {"copy source (test)": baselines["copy_source"]["bleu"]} if baselines else None
            plots.curves(records, "bleu", os.path.join(figure_dir, "bleu.png"), "sacreBLEU", reference,
                        log=False)

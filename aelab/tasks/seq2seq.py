"""What translation and captioning share: tokens, teacher forcing, decoding and its scores.

A `Seq2SeqTask` trains a SentencePiece model on the training text (unless the
workdir has one: it is saved there as tokenizer.model, so a checkpoint is
self-contained), trains a Transformer or attention RNN decoder with
teacher-forced, label-smoothed cross-entropy (PAD masked out), and decodes
with compiled greedy or beam search. Units: `loss` and `nll` are nats per
target token (loss with smoothing, nll without), `perplexity` is exp(nll),
`token_accuracy` a fraction of target tokens.

Evaluation also decodes: greedy on the first `decode.eval_examples`
validation examples during training, the configured beam on the whole test
split at the end; every evaluation writes its outputs to DIR/samples/.
Subclasses say what the source is (`inputs`), how outputs are scored
(`score`) and written (`sample_lines`).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from aelab import plots
from aelab import workdir as wd
from aelab.data import Dataset, eval_batches
from aelab.errors import UsageError, choose
from aelab.models import Seq2SeqSpec, build as build_architecture
from aelab.tasks.base import Task
from aelab.text import decode, tokenizer as tok

TOKENIZER = "tokenizer.model"
UNITS = {"loss": "nats per target token, label-smoothed", "nll": "nats per target token",
         "bleu": "sacreBLEU, 0-100", "chrf": "sacreBLEU chrF, 0-100", "token_accuracy": "fraction"}


def shift_right(target: jax.Array) -> jax.Array:
    """Teacher forcing: the decoder reads BOS, y1, ..., y_{n-1} and predicts y1, ..., yn."""
    return jnp.concatenate([jnp.full_like(target[:, :1], tok.BOS), target[:, :-1]], axis=1)


def token_losses(logits, target, label_smoothing: float):
    """(smoothed cross-entropy, cross-entropy, correct) per target token, and the 0/1 mask of real tokens."""
    # One log-softmax serves both: against the smoothed labels (1 - e) onehot + e / V the
    # cross-entropy is (1 - e) nll + e mean(-log p), no one-hot over the vocabulary needed.
    log_p = jax.nn.log_softmax(logits)
    target_log_p = jnp.take_along_axis(log_p, target[..., None], axis=-1)[..., 0]
    nll = -target_log_p
    smoothed = (1.0 - label_smoothing) * nll - label_smoothing * log_p.mean(-1)
    # Correct: the target is a most likely token (a tie counts). A max, not an argmax: XLA:CPU's
    # argmax over the vocabulary is a slow two-operand reduction.
    correct = (target_log_p >= log_p.max(-1)).astype(jnp.float32)
    return smoothed, nll, correct, (target != tok.PAD).astype(jnp.float32)


class Seq2SeqTask(Task):
    """A sequence decoder over a tokenized target: translation and captioning."""

    family = "seq2seq"

    def __init__(self, config: ml_collections.ConfigDict, policy=None, runs=None):
        super().__init__(config, policy, runs)
        choose("loss", config.loss, ("cross_entropy",))
        t, d = config.text, config.decode
        if t.max_length < 2:
            raise UsageError(f"text.max_length={t.max_length} must be >= 2 (a token and EOS)")
        if t.vocab_size < 8:
            raise UsageError(f"text.vocab_size={t.vocab_size} must be >= 8")
        if not 0.0 <= t.label_smoothing < 1.0:
            raise UsageError(f"text.label_smoothing={t.label_smoothing} must be in [0, 1)")
        if d.beam_size < 1 or d.eval_examples < 0:
            raise UsageError(f"decode.beam_size={d.beam_size} must be >= 1 and "
                             f"decode.eval_examples={d.eval_examples} >= 0")
        self.tokenizer: tok.Tokenizer | None = None
        self._decoders = {}  # beam size -> compiled decoder: evaluations reuse it, not recompile

    @classmethod
    def config_defaults(cls) -> dict:
        return {
            "loss": "cross_entropy",
            # transformer (pre-norm) | rnn (bidirectional GRU/LSTM encoder, attention decoder) | a
            # plugin's; their keys in config.model.transformer, config.model.rnn (aelab/models/seq2seq.py)
            "model": {"arch": "transformer"},
            "text": {
                "vocab_size": 8000,  # SentencePiece vocabulary (shared by both languages)
                "tokenizer": "unigram",  # unigram | bpe
                "max_length": 48,  # tokens per sequence, EOS included; longer ones are skipped and counted
                "label_smoothing": 0.1,
            },
            "decode": {
                "beam_size": 4,  # final test outputs; 1 = greedy
                "length_penalty": 0.6,  # alpha of ((5 + length) / 6) ** alpha
                "eval_examples": 500,  # validation examples decoded (greedy) at each evaluation; 0 = none
            },
        }

    # Assets: the tokenizer lives in the workdir beside the checkpoints.
    def load_assets(self, workdir: str) -> None:
        path = os.path.join(workdir, TOKENIZER)
        if os.path.lexists(path):
            with open(wd.confined(workdir, TOKENIZER, "the tokenizer"), "rb") as f:
                self.tokenizer = tok.Tokenizer(f.read(), wd.shown(path))

    def save_assets(self, workdir: str) -> None:
        path = os.path.join(workdir, TOKENIZER)
        if not os.path.exists(path):
            wd.atomic_write(path, self.tokenizer.model_proto)

    def tokenized(self, dataset: Dataset, training_text, tokenize_split, what: str) -> Dataset:
        """The dataset with every split tokenized by `tokenize_split(split, tokenizer, max_length)
        -> (split, counts)`; the tokenizer is trained on `training_text()` unless the workdir had one.
        The counts land in the dataset's info (summary.json), prefixed by the split's name."""
        t = self.config.text
        if self.tokenizer is None:
            self.tokenizer = tok.Tokenizer(tok.train(training_text(), t.vocab_size, t.tokenizer))
        splits, info = {}, dict(dataset.info)
        for name in ("train", "val", "test"):
            if dataset.split(name) is None:  # loaded for another split only
                splits[name] = None
                continue
            splits[name], counts = tokenize_split(dataset.split(name), self.tokenizer, t.max_length)
            info.update({f"{name}_{k}": v for k, v in counts.items()})
            if not len(splits[name]):
                raise UsageError(f"{dataset.name}: every {name} {what} is longer than text.max_length="
                                 f"{t.max_length} tokens; raise it")
        return Dataset(dataset.name, splits["train"], splits["val"], splits["test"], info)

    def image_shape(self, example_shape) -> tuple[int, ...] | None:
        """The shape of the images the model reads instead of source tokens; None for tokens."""
        return None

    def build_model(self, example_shape, rngs: nnx.Rngs):
        if self.tokenizer is None:  # a trained run's tokenizer.model was deleted
            raise UsageError(f"no {TOKENIZER}: a run of task={self.config.task} is rebuilt with the tokenizer it "
                             "trained with, which its workdir keeps")
        image_shape = self.image_shape(example_shape)
        spec = Seq2SeqSpec(self.tokenizer.vocab_size, self.config.text.max_length, rngs, image_shape,
                           tuple(self.config.model.channels) if image_shape else ())
        return build_architecture(self.family, self.config.model, spec)

    def teacher_forced_loss(self, model, source, target, rng: jax.Array):
        """The training loss and metrics of one target row per example, per target token."""
        logits = model(source, shift_right(target), dropout_rng=rng)
        smoothed, nll, correct, real = token_losses(logits, target, self.config.text.label_smoothing)
        tokens = jnp.maximum(real.sum(), 1.0)
        loss = (smoothed * real).sum() / tokens
        return loss, {"loss": loss, "nll": (nll * real).sum() / tokens,
                      "token_accuracy": (correct * real).sum() / tokens}

    def summarize(self, means: dict[str, np.ndarray]) -> dict[str, float]:
        """Per-token figures from the split's token sums (`eval_metrics` returns sums)."""
        tokens = float(means["tokens"])
        nll = float(means["nll_sum"]) / tokens
        return {"loss": float(means["loss_sum"]) / tokens, "nll": nll, "perplexity": float(np.exp(nll)),
                "token_accuracy": float(means["correct"]) / tokens}

    # Decoding.
    def generator(self, model, beam_size: int | None = None):
        """`generate(sources (N, ...), batch_size) -> list of str`; greedy for beam_size 1, beam
        search otherwise. The decoder is compiled once per beam size and batch shape (a task
        builds one model structure, so its graphdef never changes)."""
        d, max_length = self.config.decode, self.config.text.max_length
        beam_size = d.beam_size if beam_size is None else beam_size
        graphdef, state = nnx.split(model)
        if beam_size not in self._decoders:
            if beam_size == 1:
                search = lambda m, src: decode.greedy(m, src, max_length)  # noqa: E731
            else:
                search = lambda m, src: decode.beam_search(m, src, max_length, beam_size,  # noqa: E731
                                                           d.length_penalty)
            self._decoders[beam_size] = self.policy.with_model(model).jit(
                lambda state, src: search(nnx.merge(graphdef, state), src), program="decode")
        run = self._decoders[beam_size]

        def generate(source: np.ndarray, batch_size: int) -> list[str]:
            out = []
            for batch in eval_batches({"source": source}, batch_size):
                ids = np.asarray(run(state, batch["source"]))[:int(batch["mask"].sum())]
                out += self.tokenizer.decode(ids)
            return out

        return generate

    def inputs(self, split) -> np.ndarray:
        """What the model reads of a split: token rows, or images."""
        raise NotImplementedError

    def score(self, outputs: list[str], split) -> dict[str, float]:
        """The scores of decoded outputs against the split's references."""
        raise NotImplementedError

    def sample_lines(self, outputs: list[str], split) -> list[str]:
        """One block of text per example for DIR/samples/<split>_<step>.txt."""
        raise NotImplementedError

    def generation_metrics(self, model, split, final: bool, samples_path: str | None):
        """Scores of decoded outputs: greedy on the first decode.eval_examples examples during
        training, the configured beam on the whole split at the end; and the registered
        split-level metrics of the family."""
        d, registered = self.config.decode, super().generation_metrics(model, split, final, samples_path)
        if not final:
            if not d.eval_examples:
                return registered
            split = split.take(np.arange(min(d.eval_examples, len(split))))
        outputs = self.generator(model, d.beam_size if final else 1)(
            self.inputs(split), self.config.train.eval_batch_size)
        if samples_path:
            wd.atomic_write(samples_path, "\n".join(self.sample_lines(outputs, split)).encode("utf-8"))
        return {**registered, **self.score(outputs, split)}

    def figures(self, model, dataset: Dataset, records, figure_dir: str, baselines=None) -> None:
        plots.curves(records, "nll", os.path.join(figure_dir, "nll.png"), f"nll ({UNITS['nll']})")
        if any("bleu" in r for r in records):
            reference = {f"{name.replace('_', ' ')} (test)": scores["bleu"]
                         for name, scores in (baselines or {}).items() if "bleu" in scores}
            plots.curves(records, "bleu", os.path.join(figure_dir, "bleu.png"), "sacreBLEU", reference or None,
                         log=False)

"""Machine translation: a sentence in, a sentence out, with an attention RNN or a Transformer.

Text pairs are tokenized with one SentencePiece vocabulary for both sides,
trained on the training split (aelab.tasks.seq2seq has the rest: teacher
forcing, decoding, units). Outputs are scored by sacreBLEU (BLEU and chrF on
detokenized text against the untouched references); copying the source is
the baseline.
"""

from __future__ import annotations

import jax
import ml_collections
import numpy as np

from aelab.data import Dataset
from aelab.data.text import TextPairs, TextSplit, pad_rows, tokenize
from aelab.errors import UsageError
from aelab.tasks.seq2seq import Seq2SeqTask, shift_right, token_losses


def corpus_scores(hypotheses: list[str], references: list[str]) -> dict[str, float]:
    import sacrebleu

    return {"bleu": sacrebleu.corpus_bleu(hypotheses, [references]).score,
            "chrf": sacrebleu.corpus_chrf(hypotheses, [references]).score}


class TranslationTask(Seq2SeqTask):
    def __init__(self, config: ml_collections.ConfigDict, policy=None, runs=None):
        super().__init__(config, policy, runs)
        t = config.text
        if any(b < 1 or b > t.max_length for b in t.buckets):
            raise UsageError(f"text.buckets={tuple(t.buckets)} must lie in 1..text.max_length={t.max_length}")
        self.bucket_lengths = tuple(sorted(set(t.buckets) | {t.max_length})) if t.buckets else ()

    @classmethod
    def config_defaults(cls) -> dict:
        defaults = super().config_defaults()
        defaults["data"] = {
            "reverse": False,  # textpairs: translate the second column into the first
            "source_key": "",  # TFDS translation sets: the source and target features ("es", "en")
            "target_key": "",
            "source_lang": "",  # textpairs:DIR of parallel files: the suffixes of train.de + train.en
            "target_lang": "",
        }
        defaults["text"]["buckets"] = (12, 24)  # training batches cut to these lengths (and max_length); () = none
        return defaults

    def prepare(self, dataset: Dataset) -> Dataset:
        """Trains the tokenizer on the training pairs (unless the workdir had one) and tokenizes."""
        if not isinstance(dataset.first, TextPairs):
            raise UsageError(f"task=translation needs sentence pairs, but {dataset.name} holds images; "
                             "use textpairs:FILE or a TFDS translation set with data.source_key/target_key")

        def tokenize_split(split, tokenizer, max_length):
            tokenized, skipped = tokenize(split, tokenizer, max_length)
            return tokenized, {"skipped_longer_than_max_length": skipped}

        return self.tokenized(dataset, lambda: [*dataset.train.source, *dataset.train.target], tokenize_split,
                              "pair")

    def loss_fn(self, model, batch, rng: jax.Array, step):
        return self.teacher_forced_loss(model, batch["source"], batch["target"], rng)

    def eval_metrics(self, model, batch, rng: jax.Array, final: bool):
        """Per-example token sums; summarize divides them, so the split's figures are per token."""
        target = batch["target"]
        logits = model(batch["source"], shift_right(target))
        smoothed, nll, correct, real = token_losses(logits, target, self.config.text.label_smoothing)
        return {"loss_sum": (smoothed * real).sum(1), "nll_sum": (nll * real).sum(1),
                "correct": (correct * real).sum(1), "tokens": real.sum(1)}

    def baselines(self, dataset: Dataset) -> dict[str, dict[str, float]]:
        """Copying the source as the translation: the floor any model must clear."""
        return {"copy_source": corpus_scores(list(dataset.test.source_text), list(dataset.test.target_text))}

    def translate(self, model, lines: list[str], beam_size: int | None = None, batch_size: int = 64) -> list[str]:
        """Translations of `lines` (empty lines stay empty); a line longer than text.max_length
        tokens is refused, naming it, before anything is decoded."""
        text = [line.strip() for line in lines]
        index = [i for i, line in enumerate(text) if line]
        max_length = self.config.text.max_length
        ids = self.tokenizer.encode([text[i] for i in index])
        for i, row in zip(index, ids):
            if len(row) > max_length:
                raise UsageError(f"line {i + 1} has {len(row)} tokens (EOS included); this model takes at most "
                                 f"text.max_length={max_length}: split the sentence")
        out = [""] * len(lines)
        if index:  # the ids above, encoded once, are what the model reads
            source = pad_rows(ids, max_length)
            for i, translation in zip(index, self.generator(model, beam_size)(source, batch_size)):
                out[i] = translation
        return out

    def inputs(self, split: TextSplit) -> np.ndarray:
        return split.source

    def score(self, outputs: list[str], split: TextSplit) -> dict[str, float]:
        return corpus_scores(outputs, list(split.target_text))

    def sample_lines(self, outputs: list[str], split: TextSplit) -> list[str]:
        return [f"source\t{s}\nreference\t{r}\nmodel\t{h}\n"
                for s, r, h in zip(split.source_text, split.target_text, outputs)]

"""Image captioning: a convolutional encoder in front of the sequence decoders of aelab.tasks.seq2seq.

The image encoder (aelab.models.seq2seq.ImageEncoder) turns an image into a
grid of visual features with learned positions; the Transformer decoder
cross-attends to them, the RNN decoder attends to them at every step. The
tokenizer, loss, decoding (greedy, beam search) and sacreBLEU scoring are
translation's. Every image has several references: each training step
teacher-forces one of them, drawn at random per example (so no phrasing is
favoured); evaluation's `loss`/`nll`/`token_accuracy` are per target token
over all references; `bleu` is corpus BLEU-4 against all references and
`exact_match` the fraction of images whose caption equals one of its
references (case and whitespace aside).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from aelab import plots
from aelab.data import Dataset
from aelab.data.captions import Captions, CaptionSplit, tokenize_captions
from aelab.data.lazy import row_chunks
from aelab.data.splits import shown_rows
from aelab.errors import UsageError
from aelab.tasks.seq2seq import Seq2SeqTask, shift_right, token_losses
from aelab.text import decode, tokenizer as tok

UNITS = {"bleu": "sacreBLEU BLEU-4 against all references, 0-100",
         "exact_match": "fraction of images whose caption equals a reference"}


def normalize(caption: str) -> str:
    """What exact match compares: lower case, single spaces."""
    return " ".join(caption.lower().split())


def caption_scores(hypotheses: list[str], references) -> dict[str, float]:
    """Corpus BLEU-4 against every image's references, and exact match with any of them.

    sacreBLEU takes reference streams of equal length, so an image with fewer references than
    the most has its first repeated (a duplicate reference leaves BLEU unchanged)."""
    import sacrebleu

    width = max(len(refs) for refs in references)
    streams = [[refs[k] if k < len(refs) else refs[0] for refs in references] for k in range(width)]
    exact = [normalize(h) in {normalize(r) for r in refs} for h, refs in zip(hypotheses, references)]
    return {"bleu": sacrebleu.corpus_bleu(hypotheses, streams).score,
            "exact_match": float(np.mean(exact))}


def pick_reference(targets: jax.Array, rng: jax.Array) -> jax.Array:
    """One reference per example, (B, R, L) -> (B, L), uniform over its real (non-PAD) ones."""
    count = jnp.maximum((targets[:, :, 0] != tok.PAD).sum(1), 1)
    k = jnp.floor(jax.random.uniform(rng, count.shape) * count).astype(jnp.int32)
    return jnp.take_along_axis(targets, k[:, None, None], axis=1)[:, 0]



def nearest_rows(train_images, test_images) -> np.ndarray:
    """For each test image, the row of the training image closest in pixels (Euclidean; the
    first on ties), reading the training images a chunk at a time (row_chunks)."""
    test = np.asarray(test_images).reshape(len(test_images), -1)
    best, nearest = np.full(len(test), np.inf), np.zeros(len(test), np.int64)
    for start, chunk in row_chunks(train_images):
        flat = np.asarray(chunk).reshape(len(chunk), -1)
        distance = np.square(flat).sum(1)[None, :] - 2 * test @ flat.T  # |x - y|^2 less |x|^2
        column = distance.argmin(1)
        found = distance[np.arange(len(test)), column]
        closer = found < best
        best[closer], nearest[closer] = found[closer], start + column[closer]
    return nearest

class CaptioningTask(Seq2SeqTask):
    def __init__(self, config, policy=None, runs=None):
        super().__init__(config, policy, runs)
        if config.data.image_size < 0:
            raise UsageError(f"data.image_size={config.data.image_size} must be >= 0 (0 = 128)")

    @classmethod
    def config_defaults(cls) -> dict:
        defaults = super().config_defaults()
        defaults["model"]["channels"] = (32, 64, 128)  # image encoder: stride-2 3x3 convolutions
        defaults["data"] = {
            "image_size": 0,  # resize images (bilinear) to this square; 0 = captions:DIR's 128
            "captions_key": "",  # TFDS captioning sets: the feature whose "text" holds the captions
            "scenes": {  # digitcaptions:NAME, generated from NAME's digits
                "canvas": 64, "min_digits": 1, "max_digits": 3,
                "num_train": 10000,  # scenes from train digits (validation is carved from them)
                "num_test": 2000,  # scenes from test digits
                "language": "en",  # en | es
            },
        }
        return defaults

    def prepare(self, dataset: Dataset) -> Dataset:
        """Trains the tokenizer on the training references (unless the workdir had one) and tokenizes."""
        if not isinstance(dataset.first, Captions):
            raise UsageError(f"task=captioning needs captioned images, but {dataset.name} holds none; use "
                             "captions:DIR, digitcaptions:NAME or a TFDS set with data.captions_key")
        return self.tokenized(dataset, lambda: [r for refs in dataset.train.references for r in refs],
                              tokenize_captions, "caption")

    def image_shape(self, example_shape) -> tuple[int, ...]:
        return tuple(example_shape)

    def loss_fn(self, model, batch, rng: jax.Array, step):
        pick_rng, dropout_rng = jax.random.split(rng)
        return self.teacher_forced_loss(model, batch["source"], pick_reference(batch["targets"], pick_rng),
                                        dropout_rng)

    def eval_metrics(self, model, batch, rng: jax.Array, final: bool):
        """Token sums over all of each image's references (summarize makes them per token).
        Each image is encoded once; its memory is repeated for its references."""
        targets = batch["targets"]
        b, r, length = targets.shape
        memory = decode.encode_repeated(model, batch["source"], r)
        flat = targets.reshape(b * r, length)
        logits = model.teacher_forced(memory, shift_right(flat))
        smoothed, nll, correct, real = token_losses(logits, flat, self.config.text.label_smoothing)
        per_image = lambda x: (x * real).sum(1).reshape(b, r).sum(1)  # noqa: E731
        return {"loss_sum": per_image(smoothed), "nll_sum": per_image(nll), "correct": per_image(correct),
                "tokens": real.sum(1).reshape(b, r).sum(1)}

    def baselines(self, dataset: Dataset) -> dict[str, dict[str, float]]:
        """Nearest neighbour (Devlin et al. 2015): each test image gets the first caption of the
        training image closest in pixels; a model must beat retrieval."""
        train, test = dataset.train, dataset.test
        nearest = nearest_rows(train.images, test.images)
        return {"nearest_neighbour": caption_scores([train.references[i][0] for i in nearest],
                                                    list(test.references))}

    def captions(self, model, images: np.ndarray, beam_size: int | None = None) -> list[str]:
        """Captions of images (N, H, W, C) in [0, 1]."""
        return self.generator(model, beam_size)(images, self.config.train.eval_batch_size)

    def inputs(self, split: CaptionSplit) -> np.ndarray:
        return split.images

    def score(self, outputs: list[str], split: CaptionSplit) -> dict[str, float]:
        return caption_scores(outputs, list(split.references))

    def sample_lines(self, outputs: list[str], split: CaptionSplit) -> list[str]:
        return [f"image\t{i}\n" + "".join(f"reference\t{r}\n" for r in refs) + f"model\t{h}\n"
                for i, (refs, h) in enumerate(zip(split.references, outputs))]

    def figures(self, model, dataset: Dataset, records, figure_dir: str, baselines=None) -> None:
        super().figures(model, dataset, records, figure_dir, baselines)
        if any("exact_match" in r for r in records):
            plots.curves(records, "exact_match", os.path.join(figure_dir, "exact_match.png"),
                         UNITS["exact_match"], log=False)
        test = dataset.test.take(shown_rows(len(dataset.test), 16, seed=self.config.seed))
        hypotheses = self.captions(model, test.images)
        correct = [normalize(h) in {normalize(r) for r in refs} for h, refs in zip(hypotheses, test.references)]
        plots.captioned_images(test.images, hypotheses, correct, os.path.join(figure_dir, "captions.png"),
                               "test images and their generated captions (green: equals a reference)")

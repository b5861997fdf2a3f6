"""Sentence pairs for sequence-to-sequence tasks: reading, cleaning, tokenizing.

`textpairs:FILE` reads a UTF-8 TSV of `source<TAB>target` lines, or a zip
holding one (like the manythings.org Tatoeba files, whose columns are English
then Spanish: `data.reverse=True` translates the second column into the
first). Columns after the second (attributions) are ignored. Lines that are
empty, have no tab, or have an empty side are skipped and counted, never
guessed at; the counts land in summary.json. TFDS translation sets are read
by feature name (`data.source_key`, `data.target_key`).

Tokenized splits hold EOS-terminated id rows padded with PAD to `max_length`;
pairs with a side longer than that are skipped and counted.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import zipfile

import numpy as np

from aelab.errors import UsageError
from aelab.text.tokenizer import PAD, Tokenizer


@dataclasses.dataclass(frozen=True)
class TextPairs:
    """Raw sentence pairs (object arrays of str), before tokenization."""

    source: np.ndarray
    target: np.ndarray

    def __len__(self) -> int:
        return len(self.source)

    def take(self, index: np.ndarray) -> "TextPairs":
        return TextPairs(self.source[index], self.target[index])


@dataclasses.dataclass(frozen=True)
class TextSplit:
    """Tokenized pairs: int32 (N, max_length) id rows (EOS-terminated, PAD-padded), their
    lengths, and the original text (references for BLEU are the untouched target strings)."""

    source: np.ndarray
    target: np.ndarray
    source_text: np.ndarray
    target_text: np.ndarray

    def __len__(self) -> int:
        return len(self.source)

    def take(self, index: np.ndarray) -> "TextSplit":
        return TextSplit(self.source[index], self.target[index], self.source_text[index],
                         self.target_text[index])

    @property
    def example_shape(self) -> tuple[int, ...]:
        return tuple(self.source.shape[1:])

    @property
    def lengths(self) -> np.ndarray:
        """Tokens (with EOS) of the longer side of each pair: what bucketing sorts by."""
        return np.maximum((self.source != PAD).sum(1), (self.target != PAD).sum(1))

    def arrays(self) -> dict[str, np.ndarray]:
        return {"source": self.source, "target": self.target}


def parse_tsv(text: str, where: str) -> tuple[TextPairs, dict[str, int]]:
    """Pairs from `source<TAB>target` lines; returns them with the counts of skipped lines."""
    source, target = [], []
    skipped = collections.Counter()
    for line in text.splitlines():
        if not line.strip():
            skipped["empty_lines"] += 1
            continue
        fields = line.split("\t")
        if len(fields) < 2:
            skipped["lines_without_tab"] += 1
            continue
        a, b = fields[0].strip(), fields[1].strip()
        if not a or not b:
            skipped["pairs_with_an_empty_side"] += 1
            continue
        source.append(a)
        target.append(b)
    if not source:
        raise UsageError(f"{where}: no `source<TAB>target` line found "
                         f"(skipped: {dict(skipped) or 'nothing'}); expected a UTF-8 TSV")
    return TextPairs(np.array(source, dtype=object), np.array(target, dtype=object)), dict(skipped)


def read_text_file(path: str) -> str:
    """The text of a TSV, or of the one .txt/.tsv in a zip (files whose name starts with _ are notes)."""
    if not os.path.exists(path):
        raise UsageError(f"textpairs:{path}: no such file; pass a TSV of source<TAB>target lines "
                         "or a zip holding one")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            members = [m for m in z.namelist() if m.endswith((".txt", ".tsv"))
                       and not os.path.basename(m).startswith("_")]
            if len(members) != 1:
                raise UsageError(f"textpairs:{path}: the zip must hold exactly one .txt/.tsv file "
                                 f"(not starting with _); found {members or 'none'}")
            data = z.read(members[0])
    else:
        with open(path, "rb") as f:
            data = f.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(f"textpairs:{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def read_textpairs(path: str, reverse: bool, seed: int) -> tuple[dict, dict[str, int]]:
    """({"train": pairs}, skipped-line counts); `reverse` swaps the columns.

    The pairs are shuffled with `seed` (data.split_seed): corpora like Tatoeba are sorted by
    length, and validation/test are carved from this order, so every split spans all lengths.
    """
    pairs, skipped = parse_tsv(read_text_file(path), f"textpairs:{path}")
    if reverse:
        pairs = TextPairs(pairs.target, pairs.source)
    pairs = pairs.take(np.random.default_rng([seed, len(pairs)]).permutation(len(pairs)))
    return {"train": pairs}, skipped


def read_tfds_pairs(source, name: str, split: str, source_key: str, target_key: str) -> TextPairs:
    """A TFDS translation split (features are bytes or str) as TextPairs."""
    example = source[0]
    for key, what in ((source_key, "source_key"), (target_key, "target_key")):
        if key not in example:
            raise UsageError(f"tfds:{name}: data.{what}={key!r} is not a feature; features: {sorted(example)}")

    def text(value) -> str:
        return value.decode("utf-8") if isinstance(value, bytes) else str(value)

    rows = [(text(ex[source_key]).strip(), text(ex[target_key]).strip()) for ex in source]
    rows = [r for r in rows if r[0] and r[1]]
    if not rows:
        raise UsageError(f"tfds:{name}[{split}]: every pair has an empty side")
    src, tgt = zip(*rows)
    return TextPairs(np.array(src, dtype=object), np.array(tgt, dtype=object))


def pad_rows(rows: list[list[int]], max_length: int) -> np.ndarray:
    """int32 (N, max_length) id rows, PAD after each row's end."""
    out = np.full((len(rows), max_length), PAD, np.int32)
    for i, row in enumerate(rows):
        out[i, :len(row)] = row
    return out


def tokenize(pairs: TextPairs, tokenizer: Tokenizer, max_length: int) -> tuple[TextSplit, int]:
    """(the tokenized split, how many pairs were skipped for a side longer than max_length tokens)."""
    source, target = tokenizer.encode(list(pairs.source)), tokenizer.encode(list(pairs.target))
    keep = np.array([len(s) <= max_length and len(t) <= max_length for s, t in zip(source, target)],
                    dtype=bool)
    index = np.flatnonzero(keep)
    split = TextSplit(pad_rows([source[i] for i in index], max_length),
                      pad_rows([target[i] for i in index], max_length),
                      pairs.source[index], pairs.target[index])
    return split, int((~keep).sum())

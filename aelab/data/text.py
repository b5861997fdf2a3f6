"""Sentence pairs for sequence-to-sequence tasks: reading, cleaning, tokenizing.

`textpairs:FILE` reads a UTF-8 TSV of `source<TAB>target` lines, or a zip
holding one (like the manythings.org Tatoeba files, whose columns are English
then Spanish: `data.reverse=True` translates the second column into the
first). Columns after the second (attributions) are ignored. Lines that are
empty, have no tab, or have an empty side are skipped and counted, never
guessed at; the counts land in summary.json. TFDS translation sets are read
by feature name (`data.source_key`, `data.target_key`).

`textpairs:DIR` reads a benchmark's fixed splits: `train.tsv`, `valid.tsv`
(or `val.tsv`, `dev.tsv`) and `test.tsv`, or, with `data.source_lang` and
`data.target_lang` naming the suffixes, parallel files `train.de` +
`train.en` (line i of one translates line i of the other), as WMT releases
and fairseq's preprocessing have them. A missing validation or test split is
carved from train.

Tokenized splits hold EOS-terminated id rows padded with PAD to `max_length`;
pairs with a side longer than that are skipped and counted.
"""

from __future__ import annotations

import collections
import dataclasses
import glob
import os
import unicodedata
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

    def source_keys(self) -> np.ndarray:
        """Each pair's normalized source sentence: what `data.split_by=source` keeps on one side."""
        return np.array([normalized(s) for s in self.source], dtype=object)


def normalized(sentence: str) -> str:
    """The sentence with Unicode compatibility forms folded, case folded and whitespace collapsed:
    "¿Dónde está?" and "¿dónde  está?" are one source sentence."""
    return " ".join(unicodedata.normalize("NFKC", sentence).casefold().split())


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
        raise UsageError(f"textpairs:{path}: no such file; pass a TSV of source<TAB>target lines, "
                         "a zip holding one, or a folder of fixed splits")
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


def read_textpairs(path: str, reverse: bool, seed: int, source_lang: str = "",
                   target_lang: str = "") -> tuple[dict, dict[str, int]]:
    """({"train": pairs, ...}, skipped-line counts); `reverse` swaps source and target.

    A file's pairs are shuffled with `seed` (data.split_seed): corpora like Tatoeba are sorted by
    length, and validation/test are carved from this order, so every split spans all lengths.
    A folder's fixed splits keep their order (so `aelab translate` output lines up with them).
    """
    if os.path.isdir(path):
        splits, skipped = read_textpairs_dir(path, source_lang, target_lang)
    else:
        pairs, skipped = parse_tsv(read_text_file(path), f"textpairs:{path}")
        splits = {"train": pairs.take(np.random.default_rng([seed, len(pairs)]).permutation(len(pairs)))}
    if reverse:
        splits = {name: TextPairs(pairs.target, pairs.source) for name, pairs in splits.items()}
    return splits, skipped


# The file stems of a folder's fixed splits, in the order they are looked for.
SPLIT_STEMS = {"train": ("train",), "val": ("valid", "val", "dev"), "test": ("test",)}


def read_textpairs_dir(path: str, source_lang: str, target_lang: str) -> tuple[dict, dict[str, int]]:
    """The fixed splits of a folder: `{stem}.tsv`, or parallel `{stem}.{source_lang}` +
    `{stem}.{target_lang}`; skipped-line counts are prefixed by the split's name."""
    parallel = bool(source_lang or target_lang)
    if parallel and (not (source_lang and target_lang) or source_lang == target_lang):
        raise UsageError(f"textpairs:{path}: parallel files need both data.source_lang and data.target_lang, "
                         f"and two different ones (got {source_lang!r}, {target_lang!r})")
    suffixes = (source_lang, target_lang) if parallel else ("tsv",)
    splits, skipped = {}, {}
    for name, stems in SPLIT_STEMS.items():
        found = [stem for stem in stems if all(os.path.isfile(os.path.join(path, f"{stem}.{x}"))
                                               for x in suffixes)]
        if not found:
            continue
        files = [os.path.join(path, f"{found[0]}.{x}") for x in suffixes]
        if parallel:
            pairs, counts = parse_parallel(*files)
        else:
            pairs, counts = parse_tsv(read_text_file(files[0]), f"textpairs:{files[0]}")
        splits[name] = pairs
        skipped.update({f"{name}_{k}": v for k, v in counts.items()})
    if "train" not in splits:
        wanted = " + ".join(f"train.{x}" for x in suffixes)
        present = sorted(os.path.basename(f) for f in glob.glob(os.path.join(path, "*")))[:12]
        hint = ("" if parallel else "; for parallel files set data.source_lang and data.target_lang "
                "to their suffixes")
        raise UsageError(f"textpairs:{path}: no {wanted} in the folder (found: {', '.join(present) or 'nothing'})"
                         + hint)
    return splits, skipped


def parse_parallel(source_path: str, target_path: str) -> tuple[TextPairs, dict[str, int]]:
    """Pairs from two files whose line i translate each other; pairs with an empty side are
    skipped and counted; files of different line counts are refused."""
    source, target = (read_text_file(p).splitlines() for p in (source_path, target_path))
    if len(source) != len(target):
        raise UsageError(f"textpairs: {source_path} has {len(source)} lines but {target_path} "
                         f"{len(target)}; parallel files must have one line per pair")
    kept = [(a.strip(), b.strip()) for a, b in zip(source, target) if a.strip() and b.strip()]
    if not kept:
        raise UsageError(f"textpairs: {source_path} and {target_path} hold no pair with two non-empty sides")
    skipped = {"pairs_with_an_empty_side": len(source) - len(kept)} if len(kept) < len(source) else {}
    a, b = zip(*kept)
    return TextPairs(np.array(a, dtype=object), np.array(b, dtype=object)), skipped


def source_overlap(train: TextPairs, val: TextPairs, test: TextPairs) -> dict[str, int]:
    """How many distinct (normalized) source sentences each split holds, and how many of the
    validation and test ones also occur in train: 0 where the splits were carved by source."""
    keys = {name: set(split.source_keys()) for name, split in (("train", train), ("val", val), ("test", test))}
    return {**{f"{name}_source_sentences": len(k) for name, k in keys.items()},
            "val_sources_in_train": len(keys["val"] & keys["train"]),
            "test_sources_in_train": len(keys["test"] & keys["train"])}


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

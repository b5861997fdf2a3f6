"""Data: `load(data_config)` returns a Dataset of in-memory train/val/test splits.

Names (contract): `digits`, `idx:DIR`, `npz:FILE`, `csv:FILE`, `images:DIR`, `records:DIR` (`aelab convert`),
`dsprites` / `dsprites:small` (generated shapes with known factors), or any TFDS name;
for segmentation also `segfolder:DIR` and `scenes:NAME` (digit scenes built from data set NAME);
for translation `textpairs:FILE` (a TSV or a zip holding one) and TFDS sets with `data.source_key`;
for captioning `captions:DIR` (Flickr8k format), `digitcaptions:NAME` (described digit scenes built
from data set NAME) and TFDS sets with `data.captions_key` (coco_captions).
"""

from __future__ import annotations

import os

import ml_collections
import numpy as np

from aelab.data import captions, factors, files, records, segmentation, sources, text
from aelab.data.pipeline import TrainBatches, eval_batches, in_processes, prefetched
from aelab.data.splits import Dataset, Split, carve, fingerprint, make_split
from aelab.errors import UsageError
from aelab.registry import READERS, register_reader

# Data keys that only some tasks read (each task's config_defaults), and what they mean where
# a task's config has no such key.
OPTIONAL = {"image_size": 0, "mask_key": "", "mask_offset": 0, "reverse": False, "source_key": "",
            "target_key": "", "source_lang": "", "target_lang": "", "captions_key": "",
            "normal_classes": ()}


def _get(data: ml_collections.ConfigDict, key: str):
    return data.get(key, OPTIONAL[key])


def _scenes(data: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    if "scenes" not in data:
        raise UsageError(f"{data.name}: generated scenes are read by task=segmentation (scenes:NAME) and "
                         "task=captioning (digitcaptions:NAME); this task has no data.scenes keys")
    return data.scenes


def _scenes_from(read):
    """A reader of scenes generated from another data set's digits (scenes:NAME, digitcaptions:NAME)."""
    return lambda name, data: read(read_splits(_with_name(data, name)), _scenes(data), data.split_seed,
                                   data.test_fraction)


# The built-in readers, registered as a plugin's are: prefix, what follows it, the reader.
register_reader("digits", lambda _, data: sources.read_digits(), path="none")
register_reader("dsprites", lambda variant, data: factors.read_dsprites(variant), path="variant")
register_reader("idx", lambda path, data: sources.read_idx(path), path="folder")
register_reader("npz", lambda path, data: sources.read_npz(path), path="file")
register_reader("csv", lambda path, data: files.read_csv(path, data.label_column), path="file")
register_reader("images", lambda path, data: files.read_images(path, _get(data, "image_size")), path="folder")
register_reader("segfolder", lambda path, data: segmentation.read_segfolder(path, _get(data, "image_size")),
                path="folder")
register_reader("captions", lambda path, data: captions.read_captions_dir(path, _get(data, "image_size")),
                path="folder")
register_reader("records", lambda path, data: records.read_records(path), path="folder")
register_reader("textpairs", lambda path, data: text.read_textpairs(
    path, _get(data, "reverse"), data.split_seed, _get(data, "source_lang"), _get(data, "target_lang")),
    path="file_or_folder")
register_reader("scenes", _scenes_from(segmentation.read_scenes), path="name")
register_reader("digitcaptions", _scenes_from(captions.read_digit_captions), path="name")

__all__ = ["Dataset", "Split", "TrainBatches", "check_name", "eval_batches", "fingerprint", "in_processes", "load",
           "make_split", "prefetched", "read_splits", "reader_of"]


def reader_of(name: str):
    """(the registered reader of data name `name`, what follows its prefix), or (None, name) for a
    TFDS name."""
    prefix, sep, path = name.partition(":")
    entry = READERS.find(prefix)
    if entry is None or (not sep and entry.options["path"] not in ("none", "variant")):
        return None, name
    return entry, path


def check_name(data: ml_collections.ConfigDict) -> None:
    """What can be checked of `data.name` without reading data: a known prefix, the path after
    it as the reader declared it (an existing file or folder, a data set name), and the reader's
    own check (raises UsageError). TFDS names are checked when they are read."""
    name = data.name
    prefix, sep, path = name.partition(":")
    entry, path = reader_of(name)
    if entry is None:
        if sep:
            raise UsageError(f"unknown data prefix {prefix!r} in {name!r}; accepted: " + ", ".join(
                f"{p}:PATH" for p in sorted(READERS.names()) if READERS.get(p).options["path"] != "none")
                + " (a plugin's reader is known once config.imports names its module)")
        return
    kind = entry.options["path"]
    if kind == "none" and sep:
        raise UsageError(f"data name {name!r}: {prefix} takes nothing after it; use data.name={prefix}")
    if kind in ("file", "folder", "file_or_folder", "name") and not path:
        raise UsageError(f"data name {name!r} has no path after '{prefix}:'")
    if kind == "file" and not os.path.isfile(path):
        raise UsageError(f"{prefix}:{path}: no such file")
    if kind == "folder" and not os.path.isdir(path):
        raise UsageError(f"{prefix}:{path}: no such directory")
    if kind == "file_or_folder" and not os.path.exists(path):
        raise UsageError(f"{prefix}:{path}: no such file or directory")
    if kind == "name":
        check_name(_with_name(data, path))
    if entry.check is not None:
        entry.check(path, data)


def read_splits(data: ml_collections.ConfigDict, stream: bool = False,
                only: str | None = None) -> sources.Splits:
    """Dispatches `data.name` to its reader. A reader may return (splits, info): counts to report.
    Image folders and IDX files are read only when `stream` is False; with True they stay on
    disk (aelab.data.lazy). A reader may return a split as a function that reads it (its own
    files): with `only`, the other splits are not read, where that split is the reader's own."""
    splits = _read(data)
    splits, info = splits if isinstance(splits, tuple) else (splits, None)
    wanted = _read_now(splits.get(only)) if only is not None else None
    if wanted is not None:
        splits = {only: wanted}
    else:
        splits = {name: _read_now(split) for name, split in splits.items()}
    if not stream:
        splits = {k: v.in_memory() if hasattr(v, "in_memory") else v for k, v in splits.items()}
    return splits if info is None else (splits, info)


def _read_now(split):
    return split() if callable(split) else split


def _read(data: ml_collections.ConfigDict):
    name = data.name
    check_name(data)
    entry, path = reader_of(name)
    if entry is not None:
        return entry.target(path, data)
    read_split = None
    if _get(data, "mask_key"):  # a segmentation set: images and masks, resized to one size
        read_split = lambda source, ds_name, split: segmentation.read_tfds_examples(
            source, ds_name, split, data.image_key, data.mask_key, data.mask_offset, data.image_size)
    if _get(data, "source_key"):  # a translation set: sentence pairs
        read_split = lambda source, ds_name, split: text.read_tfds_pairs(
            source, ds_name, split, data.source_key, data.target_key)
    if _get(data, "captions_key"):  # a captioning set: images and their reference captions
        read_split = lambda source, ds_name, split: captions.read_tfds_captions(
            source, ds_name, split, data.image_key, data.captions_key, data.image_size)
    return sources.read_tfds(name, data.data_dir, data.download, data.image_key, data.label_key,
                             read_split, _get(data, "image_size"))


def _with_name(data: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
    """The data config of the data set that generated scenes are built from: its digits, not masks
    or captions."""
    inner = ml_collections.ConfigDict(data.to_dict())
    inner.name = name
    for key in ("mask_key", "captions_key"):
        if key in inner:
            inner[key] = ""
    return inner


def load(data: ml_collections.ConfigDict, stream_above_mb: float | None = None, verify: bool = True,
         only: str | None = None) -> Dataset:
    """Reads the data set and carves validation (and test, if missing) from train.

    `only="test"` (a use that reads one split): where the reader keeps that split apart (its own
    files), only it is read and the Dataset holds None for the others; a split carved from
    train needs the whole set, which is then read as without `only`.

    Carving uses `data.split_seed`, so the splits do not change with `seed`, and `data.split_by`
    (`carve`): what may not straddle two splits. Images that can stay on disk do so when the
    decoded training split would take more than `stream_above_mb` MiB (None: never), and are
    read into memory otherwise; `info["input"]` says which ("streamed" or "in memory"). Lazily read
    files' headers are all checked first unless `verify` is False (a use reads a few rows: a bad
    one is reported when read).
    """
    splits, info = read_splits(data, stream=stream_above_mb is not None, only=only), {}
    if isinstance(splits, tuple):
        splits, info = splits
    if only is not None and set(splits) == {only}:
        return _one_split(data, only, splits[only], info, verify)
    train, val, test = splits["train"], splits.get("val"), splits.get("test")
    for split in (train, val, test):  # a bad file stops the run now, not at the step that reads it
        if verify and _streamed(split):
            split.verify()
    by = data.split_by or ("source" if isinstance(train, text.TextPairs) else "example")
    if by == "source" and not isinstance(train, text.TextPairs):
        raise UsageError(f"data.split_by=source groups sentence pairs by their source, but {data.name} "
                         "holds no sentence pairs; use example or block")
    carved = [name for name, split in (("test", test), ("val", val)) if split is None]
    if test is None:
        train, test = carve(train, data.test_fraction, data.split_seed, "test", by)
    if val is None:
        train, val = carve(train, data.val_fraction, data.split_seed + 1, "validation", by)
    if carved:
        info = {**info, "carved": carved, "split_by": by}
    if isinstance(train, text.TextPairs):
        info.update(text.source_overlap(train, val, test))
    normal = tuple(_get(data, "normal_classes"))
    if normal:  # one-class protocol: learn "normal" from these classes only
        train, val = (_keep_classes(s, normal, data.name, n)
                      for s, n in ((train, "train"), (val, "val")))
    if any(map(_streamed, (train, val, test))) and train.decoded_bytes <= (stream_above_mb or 0) * 2 ** 20:
        train, val, test = (s.in_memory() for s in (train, val, test))
    info["input"] = "streamed" if _streamed(train) else "in memory"
    for split_name, split in (("val", val), ("test", test)):
        if hasattr(split, "images") and split.images.shape[1:] != train.images.shape[1:]:
            raise UsageError(
                f"{data.name}: {split_name} images have shape {split.images.shape[1:]} but "
                f"train images {train.images.shape[1:]}; all splits must share one shape")
    return Dataset(data.name, train, val, test, info)


def _one_split(data: ml_collections.ConfigDict, name: str, split, info: dict, verify: bool) -> Dataset:
    """A Dataset of split `name` alone, as `load` would give it (the others None)."""
    if verify and _streamed(split):
        split.verify()
    if name != "test" and tuple(_get(data, "normal_classes")):
        split = _keep_classes(split, tuple(_get(data, "normal_classes")), data.name, name)
    parts = {"train": None, "val": None, "test": None, name: split}
    return Dataset(data.name, parts["train"], parts["val"], parts["test"], {**info, "input": "streamed"
                   if _streamed(split) else "in memory", "only": name})


def _streamed(split) -> bool:
    """Whether a split (images, image+mask or captioned images) still reads its files lazily."""
    return getattr(split, "streamed", False)


def _keep_classes(split: Split, classes: tuple[int, ...], name: str, split_name: str) -> Split:
    if split.labels is None:
        raise UsageError(f"data.normal_classes needs labels, but {name} has none")
    kept = split.take(np.flatnonzero(np.isin(split.labels, classes)))
    if len(kept) == 0:
        raise UsageError(f"{name}: no {split_name} example has a label in data.normal_classes={classes}; "
                         f"labels present: {sorted(set(split.labels.tolist()))}")
    return kept

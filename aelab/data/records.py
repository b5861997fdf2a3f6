"""A data set converted once into ArrayRecord shards (`aelab convert`), read back as `records:DIR`.

A folder of a million small image files costs a listing and a million opens at every start;
its records are a few large files that grain reads by index. The format is array_record's
(what grain and TFDS read), with a small manifest:

    DIR/manifest.json   {"format": "aelab-records", "version": 1, "source": NAME,
                         "image_shape": [H, W, C], "dtype": "uint8" | "float32", "classes": [...],
                         "mask_shape": [H, W] (segmentation sets only),
                         "splits": {SPLIT: {"count": N, "labels": "SPLIT_labels.npy" | null,
                                            "references": "SPLIT_captions.json" (captioned sets),
                                            "shards": [{"file", "count", "bytes", "sha256"}]}}}
    DIR/SPLIT-00000-of-00004.array_record   one record per example: its pixels, row-major, then
                                            (segmentation) its mask's int32 class ids, row-major
    DIR/SPLIT_labels.npy                    int64 labels, where the source has them
    DIR/SPLIT_captions.json                 each image's reference captions (a list of lists)

Only the splits the source ships are written; the missing ones are carved at load time, as
for any source.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import hashlib
import json
import os
import threading

import numpy as np

from aelab.data.captions import Captions, reference_tuples
from aelab.data.lazy import READ_THREADS, LazyImages
from aelab.data.splits import Split, make_split
from aelab.errors import UsageError, WriteError, describe_os_error
from aelab.workdir import confined, release, scratch as scratch_folder

FORMAT, VERSION = "aelab-records", 1
MANIFEST = "manifest.json"


def convert(splits: dict[str, Split | Captions | None], source: str, out: str, shard_examples: int = 10_000,
            classes: list[str] | None = None) -> dict:
    """Writes `splits` (images with labels, masks or reference captions) to `out` as ArrayRecord
    shards and a manifest; returns the manifest. `out` must not exist; it appears whole or not
    at all."""
    if os.path.exists(out):
        raise UsageError(f"--out={out} already exists; converting never overwrites (choose a new folder)")
    present = {name: split for name, split in splits.items() if split is not None}
    if any(not isinstance(s, (Split, Captions)) for s in present.values()):
        raise UsageError(f"{source}: only image data sets (with labels, masks or captions) convert to records; "
                         "sentence pairs are read from their text files")
    first = next(iter(present.values()))
    # Pixels stay uint8 where the source holds them so (4x smaller than floats, and exact).
    raw = isinstance(first.images, LazyImages) and first.images.raw(np.array([0])).dtype == np.uint8
    manifest = {"format": FORMAT, "version": VERSION, "source": source,
                "image_shape": list(first.images.shape[1:]), "dtype": "uint8" if raw else "float32",
                "classes": classes or [], "splits": {}}
    masked = isinstance(first, Split) and first.masks is not None
    if masked:
        manifest["mask_shape"] = list(first.masks.shape[1:])
    parent = os.path.dirname(os.path.abspath(out))
    try:
        with scratch_folder(parent, ".convert-") as scratch:
            _write(present, manifest, masked, raw, scratch, shard_examples)
            release(scratch)
            os.rename(scratch, out)
    except (OSError, RuntimeError) as e:  # a full disk: array_record raises RuntimeError
        raise WriteError(f"cannot write {out} ({describe_os_error(e)}); nothing was written") from None
    return manifest


def _write(present: dict, manifest: dict, masked: bool, raw: bool, scratch: str, shard_examples: int) -> None:
    """The shards, labels, captions and manifest of `present`'s splits, into `scratch`."""
    from array_record.python.array_record_module import ArrayRecordWriter

    for name, split in present.items():
        shards = max(1, -(-len(split) // shard_examples))
        entry = {"count": len(split), "labels": None, "shards": []}
        for k, start in enumerate(range(0, len(split), shard_examples)):
            rows = np.arange(start, min(start + shard_examples, len(split)))
            file = f"{name}-{k:05d}-of-{shards:05d}.array_record"
            writer = ArrayRecordWriter(os.path.join(scratch, file), "group_size:1")
            chunks = np.array_split(rows, max(1, len(rows) // 256))
            read = split.images.raw if raw else (lambda c, images=split.images: np.asarray(images[c]))
            # A record is the pixels, then (segmentation) the mask's class ids.
            read_masks = ((lambda c, masks=split.masks: np.asarray(masks[c], np.int32)) if masked
                          else (lambda c: np.zeros((len(c), 0), np.int32)))
            with concurrent.futures.ThreadPoolExecutor(READ_THREADS) as pool:  # decoding, in order
                for pixels, masks in zip(pool.map(read, chunks), pool.map(read_masks, chunks)):
                    for row, mask in zip(pixels, masks):
                        writer.write(np.ascontiguousarray(row).tobytes() + np.ascontiguousarray(mask).tobytes())
            writer.close()
            entry["shards"].append({"file": file, "count": len(rows), **_size_and_digest(
                os.path.join(scratch, file))})
        if getattr(split, "labels", None) is not None:
            entry["labels"] = f"{name}_labels.npy"
            np.save(os.path.join(scratch, entry["labels"]), split.labels.astype(np.int64))
        if isinstance(split, Captions):
            entry["references"] = f"{name}_captions.json"
            with open(os.path.join(scratch, entry["references"]), "w", encoding="utf-8") as f:
                json.dump([list(refs) for refs in split.references], f, ensure_ascii=False)
        manifest["splits"][name] = entry
    with open(os.path.join(scratch, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=1)


def _size_and_digest(path: str) -> dict:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"bytes": os.path.getsize(path), "sha256": digest.hexdigest()}


def read_records(directory: str) -> dict[str, Split | Captions | None]:
    """The splits of a converted folder, images (and masks) read from their shards when a batch
    needs them; labels and captions read when their split is.

    The manifest is checked whole first (shapes, dtypes, split names, counts, and every file it
    names a plain file of this folder); a missing shard, or one whose size or record count
    differs from the manifest, is a UsageError naming it when its split is opened (a use opens
    only the split it reads). Verifying the split (what training does before its first step)
    checks every shard's SHA-256; a shard that fails to read later is one UsageError naming it
    too."""
    manifest = _manifest(directory)
    splits: dict[str, Split | Captions | None] = {"train": None, "val": None, "test": None}
    for name, entry in manifest["splits"].items():
        splits[name] = functools.partial(_read_split, directory, manifest, name, entry)
    return splits


def _read_split(directory: str, manifest: dict, name: str, entry: dict) -> Split | Captions:
    import grain

    shape, dtype = tuple(manifest["image_shape"]), np.dtype(manifest["dtype"])
    image_bytes = int(np.prod(shape)) * dtype.itemsize
    mask_shape = tuple(manifest.get("mask_shape") or ())
    paths = []
    for shard in entry["shards"]:
        path = _member(directory, shard["file"])
        if not os.path.isfile(path):
            raise UsageError(f"records:{directory}: missing shard {shard['file']} (the manifest lists "
                             f"{len(entry['shards'])} for split {name})")
        if os.path.getsize(path) != shard["bytes"]:
            raise UsageError(f"records:{directory}: shard {shard['file']} has {os.path.getsize(path)} "
                             f"bytes but the manifest says {shard['bytes']}; convert the data again")
        paths.append(path)
    try:
        source = grain.sources.ArrayRecordDataSource(paths)
        found = len(source)
    except Exception as e:  # not array_record data, a damaged index: name the shard
        raise UsageError(f"records:{directory}: {_unreadable(grain, paths, entry['shards'])} cannot be read "
                         f"({_reason(e)}); convert the data again") from None
    if found != entry["count"]:
        raise UsageError(f"records:{directory}: split {name} holds {found} records but the "
                         f"manifest says {entry['count']}")
    shards = Shards(directory, entry["shards"], paths, image_bytes + 4 * int(np.prod(mask_shape or (0,))))
    if found:
        shards.record(source, 0)  # the manifest's shapes and dtype fit the records, before any run starts

    def read(i: int) -> np.ndarray:
        return np.frombuffer(shards.record(source, i), dtype, count=image_bytes // dtype.itemsize).reshape(shape)

    def read_mask(i: int) -> np.ndarray:
        return np.frombuffer(shards.record(source, i), np.int32, offset=image_bytes).reshape(mask_shape)

    where = f"records:{directory}[{name}]"
    describe = lambda i: f"{where}[{i}]"  # noqa: E731
    images = LazyImages(read, shape, entry["count"], describe, check=shards.verify_row)
    if entry.get("references"):
        return Captions(images, reference_tuples(_references(directory, entry["references"], entry["count"])))
    labels = _labels(directory, entry["labels"]) if entry["labels"] else None
    split = make_split(images, labels, where)
    if mask_shape:
        split = dataclasses.replace(split, masks=LazyImages(read_mask, mask_shape, entry["count"], describe,
                                                             dtype=np.int32))
    return split


def _unreadable(grain, paths: list[str], shards: list[dict]) -> str:
    """Which shard of a split fails to open ("a shard" where each opens alone)."""
    for path, shard in zip(paths, shards):
        try:
            grain.sources.ArrayRecordDataSource([path])
        except Exception:
            return f"shard {shard['file']}"
    return "a shard"


class Shards:
    """A split's shards: which holds record i, each one's SHA-256 checked once (verify), and
    read errors as one line naming the shard."""

    def __init__(self, directory: str, shards: list[dict], paths: list[str], record_bytes: int):
        self.directory, self.shards, self.paths, self.record_bytes = directory, shards, paths, record_bytes
        self.ends = np.cumsum([shard["count"] for shard in shards])
        self._checked: set[int] = set()
        self._lock = threading.Lock()

    def shard_of(self, i: int) -> int:
        return int(np.searchsorted(self.ends, i, side="right"))

    def record(self, source, i: int) -> bytes:
        try:
            record = source[i]
        except Exception as e:  # a damaged shard: array_record's chunk hash, a short read
            file = self.shards[self.shard_of(i)]["file"]
            raise UsageError(f"records:{self.directory}: shard {file} is damaged ({_reason(e)}); convert the data "
                             "again") from None
        if len(record) != self.record_bytes:  # the manifest's shapes or dtype are not the shard's
            file = self.shards[self.shard_of(i)]["file"]
            raise UsageError(f"records:{self.directory}: shard {file} holds records of {len(record)} bytes, but "
                             f"{MANIFEST}'s image_shape, dtype and mask_shape make {self.record_bytes}; convert the "
                             "data again")
        return record

    def verify_row(self, i: int) -> None:
        """Checks the SHA-256 of the shard holding source row i against the manifest, once."""
        k = self.shard_of(i)
        with self._lock:
            if k in self._checked:
                return
            self._checked.add(k)
        if _size_and_digest(self.paths[k])["sha256"] != self.shards[k]["sha256"]:
            raise UsageError(f"records:{self.directory}: shard {self.shards[k]['file']} does not match the SHA-256 "
                             "its manifest records (damaged or changed); convert the data again")


def _reason(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:160] if text else type(error).__name__


def _member(directory: str, name: str) -> str:
    """A file the manifest names: a plain file name of this folder, never a path out of it."""
    if os.path.basename(name) != name or name in (".", "..") or name.startswith("."):
        raise UsageError(f"records:{directory}: {MANIFEST} names {name!r}, not a file of this folder")
    return confined(directory, name, f"records:{directory}: {MANIFEST} names")


def _labels(directory: str, name: str) -> np.ndarray:
    try:
        return np.load(_member(directory, name), allow_pickle=False)
    except (OSError, ValueError) as e:
        raise UsageError(f"records:{directory}: cannot read labels {name} ({_reason(e)})") from None


def _references(directory: str, name: str, count: int) -> list:
    try:
        with open(_member(directory, name), encoding="utf-8") as f:
            references = json.load(f)
    except (OSError, ValueError) as e:
        raise UsageError(f"records:{directory}: cannot read captions {name} ({_reason(e)})") from None
    if (not isinstance(references, list) or len(references) != count
            or any(not isinstance(r, list) or not all(isinstance(c, str) for c in r) for r in references)):
        raise UsageError(f"records:{directory}: {name} is damaged: not {count} lists of captions")
    return references


def _manifest(directory: str) -> dict:
    path = os.path.join(directory, MANIFEST)
    try:
        with open(path) as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise UsageError(f"records:{directory}: no {MANIFEST}; make the folder with `aelab convert`") from None
    except (OSError, ValueError) as e:
        raise UsageError(f"records:{directory}: cannot read {MANIFEST} ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise UsageError(f"records:{directory}: {MANIFEST} is not an {FORMAT} manifest of version {VERSION}")
    problem = _manifest_problem(manifest)
    if problem:
        raise UsageError(f"records:{directory}: {MANIFEST} is damaged: {problem}; convert the data again")
    return manifest


def _sizes(value, rank: tuple[int, ...]) -> bool:
    return (isinstance(value, list) and len(value) in rank
            and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in value))


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _manifest_problem(manifest: dict) -> str | None:
    """What is wrong with a manifest's structure, or None."""
    if not _sizes(manifest.get("image_shape"), (3,)):
        return f"image_shape={manifest.get('image_shape')!r} is not [H, W, C] of positive sizes"
    if manifest.get("dtype") not in ("uint8", "float32"):
        return f"dtype={manifest.get('dtype')!r} is neither uint8 nor float32"
    if "mask_shape" in manifest and not _sizes(manifest["mask_shape"], (2,)):
        return f"mask_shape={manifest['mask_shape']!r} is not [H, W] of positive sizes"
    splits = manifest.get("splits")
    if not isinstance(splits, dict) or "train" not in splits or not set(splits) <= {"train", "val", "test"}:
        return "splits must map train (and optionally val, test) to their shards"
    for name, entry in splits.items():
        if not isinstance(entry, dict) or not _count(entry.get("count")) or not isinstance(entry.get("shards"), list):
            return f"split {name} has no count and list of shards"
        if not isinstance(entry.get("labels"), (str, type(None))) or not isinstance(entry.get("references", ""), str):
            return f"split {name}'s labels or references are not file names"
        for shard in entry["shards"]:
            if (not isinstance(shard, dict) or not isinstance(shard.get("file"), str) or not _count(shard.get("count"))
                    or not _count(shard.get("bytes")) or not isinstance(shard.get("sha256"), str)):
                return f"split {name} has a shard without file, count, bytes and sha256"
        held = sum(shard["count"] for shard in entry["shards"])
        if held != entry["count"]:
            return f"split {name}'s shards hold {held} records, not {entry['count']}"
    return None

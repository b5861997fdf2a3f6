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
import hashlib
import json
import os
import shutil
import tempfile

import numpy as np

from aelab.data.captions import Captions, reference_tuples
from aelab.data.lazy import READ_THREADS, LazyImages
from aelab.data.splits import Split, make_split
from aelab.errors import UsageError

FORMAT, VERSION = "aelab-records", 1
MANIFEST = "manifest.json"


def convert(splits: dict[str, Split | Captions | None], source: str, out: str, shard_examples: int = 10_000,
            classes: list[str] | None = None) -> dict:
    """Writes `splits` (images with labels, masks or reference captions) to `out` as ArrayRecord
    shards and a manifest; returns the manifest. `out` must not exist; it appears whole or not
    at all."""
    from array_record.python.array_record_module import ArrayRecordWriter

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
    os.makedirs(parent, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=".convert-", dir=parent)
    try:
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
        os.rename(scratch, out)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return manifest


def _size_and_digest(path: str) -> dict:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"bytes": os.path.getsize(path), "sha256": digest.hexdigest()}


def read_records(directory: str) -> dict[str, Split | Captions | None]:
    """The splits of a converted folder, images (and masks) read from their shards when a batch
    needs them; labels and captions read at once.
    A missing shard, or one whose size or record count differs from the manifest, is a
    UsageError naming it."""
    import grain

    manifest = _manifest(directory)
    shape, dtype = tuple(manifest["image_shape"]), np.dtype(manifest["dtype"])
    image_bytes = int(np.prod(shape)) * dtype.itemsize
    mask_shape = tuple(manifest.get("mask_shape", ()))
    splits: dict[str, Split | Captions | None] = {"train": None, "val": None, "test": None}
    for name, entry in manifest["splits"].items():
        paths = []
        for shard in entry["shards"]:
            path = os.path.join(directory, shard["file"])
            if not os.path.isfile(path):
                raise UsageError(f"records:{directory}: missing shard {shard['file']} (the manifest lists "
                                 f"{len(entry['shards'])} for split {name})")
            if os.path.getsize(path) != shard["bytes"]:
                raise UsageError(f"records:{directory}: shard {shard['file']} has {os.path.getsize(path)} "
                                 f"bytes but the manifest says {shard['bytes']}; convert the data again")
            paths.append(path)
        source = grain.sources.ArrayRecordDataSource(paths)
        if len(source) != entry["count"]:
            raise UsageError(f"records:{directory}: split {name} holds {len(source)} records but the "
                             f"manifest says {entry['count']}")

        def read(i: int, source=source) -> np.ndarray:
            return np.frombuffer(source[i], dtype, count=image_bytes // dtype.itemsize).reshape(shape)

        def read_mask(i: int, source=source) -> np.ndarray:
            return np.frombuffer(source[i], np.int32, offset=image_bytes).reshape(mask_shape)

        where = f"records:{directory}[{name}]"
        describe = lambda i, where=where: f"{where}[{i}]"  # noqa: E731
        images = LazyImages(read, shape, entry["count"], describe)
        if entry.get("references"):
            with open(os.path.join(directory, entry["references"]), encoding="utf-8") as f:
                splits[name] = Captions(images, reference_tuples(json.load(f)))
            continue
        labels = np.load(os.path.join(directory, entry["labels"])) if entry["labels"] else None
        split = make_split(images, labels, where)
        if mask_shape:
            split = dataclasses.replace(split, masks=LazyImages(read_mask, mask_shape, entry["count"], describe,
                                                                 dtype=np.int32))
        splits[name] = split
    return splits


def _manifest(directory: str) -> dict:
    path = os.path.join(directory, MANIFEST)
    try:
        with open(path) as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise UsageError(f"records:{directory}: no {MANIFEST}; make the folder with `aelab convert`") from None
    except (OSError, ValueError) as e:
        raise UsageError(f"records:{directory}: cannot read {MANIFEST} ({e})") from None
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise UsageError(f"records:{directory}: {MANIFEST} is not an {FORMAT} manifest of version {VERSION}")
    return manifest

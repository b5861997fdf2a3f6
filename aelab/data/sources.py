"""Readers for every data name: `digits`, `idx:DIR`, `npz:FILE` and TFDS names.

Each reader returns {split name: Split or None} with whatever splits the data
set ships; `aelab.data.load` carves the missing ones.
"""

from __future__ import annotations

import functools
import gzip
import os
import zipfile
import zlib

import numpy as np

from aelab.data.files import square_and_resize
from aelab.data.lazy import LazyImages
from aelab.data.splits import Split, make_split
from aelab.errors import UsageError

Splits = dict[str, "Split | None"]


def read_digits() -> Splits:
    """scikit-learn's bundled 8x8 digits (1,797 images, values 0..16): no files, no network.

    Read from the CSV that scikit-learn ships, without importing scikit-learn (seconds of every
    start of the quick start); `sklearn.datasets.load_digits` reads the same file."""
    table = _digits_table()
    images = (table[:, :64].reshape(-1, 8, 8) / 16.0).astype(np.float32)
    return {"train": make_split(images, table[:, 64].astype(np.int64), "digits"), "val": None, "test": None}


def _digits_table() -> np.ndarray:
    """(1797, 65): 64 pixel values and the label per row."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    path = os.path.join(spec.submodule_search_locations[0], "datasets", "data", "digits.csv.gz") if spec else ""
    if os.path.isfile(path):
        return np.loadtxt(path, delimiter=",")
    from sklearn.datasets import load_digits  # a scikit-learn that keeps it elsewhere

    digits = load_digits()
    return np.column_stack([digits.data, digits.target])


# --- idx:DIR ---------------------------------------------------------------

_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_MAGIC = {3: 2051, 1: 2049}  # uint8 data, rank 3 (images) or 1 (labels)


def _find_idx_file(directory: str, stem: str) -> str:
    for candidate in (stem + ".gz", stem):
        path = os.path.join(directory, candidate)
        if os.path.isfile(path):
            return path
    raise UsageError(f"idx:{directory}: missing {stem}[.gz]; expected the four MNIST-format IDX files")


def read_idx_file(path: str, rank: int) -> np.ndarray:
    """One IDX file of uint8 data with the given rank: memory-mapped, or read whole if gzipped."""
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                data = f.read()
            header, size = data[:4 + 4 * rank], len(data)
        else:
            with open(path, "rb") as f:
                header = f.read(4 + 4 * rank)
            data, size = None, os.path.getsize(path)
    except (OSError, EOFError, zlib.error) as e:
        raise UsageError(f"{path}: cannot read ({e})") from None
    if len(header) < 4 + 4 * rank:
        raise UsageError(f"{path}: truncated header ({len(header)} bytes)")
    magic = int.from_bytes(header[:4], "big")
    if magic != _IDX_MAGIC[rank]:
        raise UsageError(
            f"{path}: IDX magic number {magic}; expected {_IDX_MAGIC[rank]} (uint8, rank {rank})")
    dims = [int.from_bytes(header[4 + 4 * i:8 + 4 * i], "big") for i in range(rank)]
    body_size = size - len(header)
    if body_size != int(np.prod(dims)):
        raise UsageError(
            f"{path}: header says {dims} ({int(np.prod(dims))} bytes) but the file holds {body_size}")
    if data is None:  # pages are read when a batch touches them
        return np.memmap(path, dtype=np.uint8, mode="r", offset=len(header), shape=tuple(dims))
    return np.frombuffer(data, dtype=np.uint8, offset=len(header)).reshape(dims)


def read_idx(directory: str) -> Splits:
    """The train and t10k files, each split's pair opened only when that split is needed."""
    if not os.path.isdir(directory):
        raise UsageError(f"idx:{directory}: no such directory; pass a folder with the four IDX files")

    def read(name: str) -> Split:
        image_stem, label_stem = _IDX_FILES[name]
        image_path = _find_idx_file(directory, image_stem)
        images = LazyImages.from_array(read_idx_file(image_path, rank=3), image_path)
        labels = np.array(read_idx_file(_find_idx_file(directory, label_stem), rank=1))
        return make_split(images, labels, image_path)

    return {"val": None, **{name: functools.partial(read, name) for name in _IDX_FILES}}


# --- npz:FILE --------------------------------------------------------------

def read_npz(path: str) -> Splits:
    """An .npz with `x_train` (required), `y_train`, and optionally `x_val`/`y_val`, `x_test`/`y_test`."""
    if not os.path.isfile(path):
        raise UsageError(f"npz:{path}: no such file")
    if not zipfile.is_zipfile(path):
        raise UsageError(f"npz:{path}: not an .npz archive (np.savez writes a zip of .npy arrays)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, zlib.error) as e:
        raise UsageError(f"npz:{path}: cannot read ({e})") from None
    if "x_train" not in arrays:
        raise UsageError(f"npz:{path}: no 'x_train' array; found {sorted(arrays)}")
    splits: Splits = {}
    for name in ("train", "val", "test"):
        x = arrays.get(f"x_{name}")
        splits[name] = None if x is None else make_split(x, arrays.get(f"y_{name}"), f"{path}[x_{name}]")
    return splits


# --- TFDS ------------------------------------------------------------------

def read_tfds(name: str, data_dir: str | None, download: bool, image_key: str,
              label_key: str, read_split=None, image_size: int = 0) -> Splits:
    """Any TFDS image data set, read with `tfds.data_source` (array_record) and grain.

    No TensorFlow: `data_source` reads array_record files; with `download`,
    a data set not yet on disk is downloaded and prepared first.
    `read_split(source, name, split) -> Split` replaces the image/label reader
    (segmentation reads masks this way). Images are read from the ArrayRecord files only when
    a batch needs them (cut to a central square of `image_size` where given); labels, where
    the set has them, are read once.
    """
    import grain
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir or None, file_format="array_record")
    except ModuleNotFoundError as e:
        if "tensorflow" not in str(e):
            raise
        raise UsageError(  # e.g. coco_captions: its feature spec is written with tf dtypes
            f"tfds:{name}: this data set's TFDS builder needs TensorFlow even to describe its features "
            "(No module named 'tensorflow'); `pip install tensorflow-cpu` to read it") from None
    except Exception as e:  # TFDS raises several types for an unknown name
        raise UsageError(
            f"unknown data name {name!r} ({type(e).__name__}); accepted: digits, idx:DIR, "
            "npz:FILE, csv:FILE, images:DIR or a TFDS name such as mnist, fashion_mnist, cifar10") from None
    known_splits = set(builder.info.splits.keys())
    splits: Splits = {}
    for ours, theirs in (("train", "train"), ("val", "validation"), ("test", "test")):
        # Without metadata (mock data) trust only train and test: a validation split is carved.
        if (known_splits or ours == "val") and theirs not in known_splits:
            splits[ours] = None
            continue
        try:
            source = tfds.data_source(name, split=theirs, data_dir=data_dir or None,
                                      download=download)
        except (ValueError, KeyError) as e:
            if ours == "train":
                raise UsageError(f"tfds:{name}: cannot read split 'train' ({e})") from None
            splits[ours] = None
            continue
        except Exception as e:  # missing files, download failures
            raise UsageError(
                f"tfds:{name}: not available under data_dir={data_dir or '~/tensorflow_datasets'} "
                f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
        splits[ours] = (functools.partial(read_split, source, name, theirs) if read_split else
                        functools.partial(_read_source, grain, source, name, theirs, image_key, label_key,
                                          image_size))  # read (its labels: one pass) only when needed
    return splits


def _read_source(grain, source, name, split, image_key, label_key, image_size) -> Split:
    example = source[0]
    if image_key not in example:
        raise UsageError(f"tfds:{name}: no feature {image_key!r}; features: {sorted(example)}")

    def read(i: int) -> np.ndarray:
        image = source[i][image_key]
        return square_and_resize(image if image.ndim == 3 else image[..., None], image_size)

    where = f"tfds:{name}[{split}]"
    images = LazyImages(read, read(0).shape, len(source), lambda i: f"{where}[{i}]")
    labels = None
    if label_key in example:  # one pass over the records (threads: decoding releases the GIL)
        dataset = grain.MapDataset.source(source).map(lambda ex: ex[label_key]).batch(1024)
        labels = np.concatenate(list(dataset.to_iter_dataset(grain.ReadOptions(num_threads=4))))
    return make_split(images, labels, where)

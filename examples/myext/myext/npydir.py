"""A data reader for a folder of .npy files, as an aelab plugin: `data.name="npydir:DIR"`.

    DIR/train/<class>/<name>.npy      one example each: an (H, W) or (H, W, C) array
    DIR/test/<class>/<name>.npy       optional; without it, aelab carves a test split from train

Classes are the sorted folder names; every array must have the first one's shape. Values are
divided by `data.npydir.scale` (e.g. 255 for 8-bit arrays) and must then lie in [0, 1].

    config.imports = ("myext.npydir",)
    config.data.name = "npydir:path/to/folder"
"""

from __future__ import annotations

import os

import numpy as np

import aelab
from aelab.data import make_split
from aelab.errors import UsageError


def read_folder(folder: str, scale: float):
    """(images (N, H, W, C) float32, labels (N,)) of one split's folder."""
    classes = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
    paths = [(os.path.join(folder, c, f), label) for label, c in enumerate(classes)
             for f in sorted(os.listdir(os.path.join(folder, c))) if f.endswith(".npy")]
    if not paths:
        raise UsageError(f"npydir:{folder}: no <class>/*.npy files")
    images = []
    for path, _ in paths:
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise UsageError(f"{path}: not a .npy array ({e})") from None
        array = array[..., None] if array.ndim == 2 else array
        if images and array.shape != images[0].shape:
            raise UsageError(f"{path}: shape {array.shape}, but {paths[0][0]} has {images[0].shape}")
        images.append(array)
    images = np.stack(images).astype(np.float32) / scale
    if images.min() < 0 or images.max() > 1:
        raise UsageError(f"npydir:{folder}: values span [{images.min():g}, {images.max():g}] after dividing "
                         f"by data.npydir.scale={scale:g}; they must lie in [0, 1]")
    return images, np.array([label for _, label in paths])


def check(path: str, data) -> None:
    if not os.path.isdir(os.path.join(path, "train")):
        raise UsageError(f"npydir:{path}: no train/ folder; expected train/<class>/*.npy")
    if data.npydir.scale <= 0:
        raise UsageError(f"data.npydir.scale={data.npydir.scale} must be > 0")


@aelab.register_reader("npydir", path="folder", check=check, config={"scale": 1.0})
def read(path: str, data):
    """{"train": ..., "val": None (carved), "test": ... or None (carved)}."""
    splits = {"val": None, "test": None}
    for name in ("train", "test"):
        folder = os.path.join(path, name)
        if os.path.isdir(folder):
            images, labels = read_folder(folder, data.npydir.scale)
            splits[name] = make_split(images, labels, f"npydir:{folder}")
    return splits

"""Segmentation data: (image, mask) pairs with per-pixel integer class ids.

Sources:
- `segfolder:DIR`: `DIR/images/` and `DIR/masks/` with matching file stems
  (`image/` and `label/` are accepted too, as in the ISBI 2012 layout), or
  the same under `train/`, `val/`, `test/` subfolders. Masks are
  single-channel PNGs of class ids; masks holding only 0 and 255 are binary
  and read as 0/1.
- `scenes:NAME`: a generated multi-class set built from the labelled digits of
  another data set (`scenes:idx:DIR` for real MNIST, `scenes:digits`): digits
  placed at random, without overlap, on a blank canvas; each pixel is its
  digit's class + 1 where the digit's ink is at least `ink_threshold`, else
  background 0. Train scenes use train digits, test scenes test digits.
- TFDS sets with a mask feature (`data.mask_key`), e.g. `oxford_iiit_pet`.

Resizing (`data.image_size`) is deterministic: bilinear for images, nearest
for masks, so class ids are never blended.
"""

from __future__ import annotations

import os
from typing import Sequence

import ml_collections
import numpy as np

from aelab.data.files import image_files, image_shape, open_image, read_image, resize_image
from aelab.data.lazy import LazyImages
from aelab.data.splits import Split, digit_pools, to_unit_float
from aelab.errors import UsageError

IMAGE_DIRS = ("images", "image")
MASK_DIRS = ("masks", "mask", "labels", "label")
SPLIT_DIRS = (("train", "train"), ("val", "val"), ("test", "test"))


# --- segfolder ---------------------------------------------------------------

def read_segfolder(directory: str, image_size: int) -> dict[str, Split | None]:
    """`segfolder:DIR`: one Split per `train/val/test` subfolder, or all of DIR as train."""
    if not os.path.isdir(directory):
        raise UsageError(f"segfolder:{directory}: no such directory")
    if os.path.isdir(os.path.join(directory, "train")):
        return {name: _read_pairs(os.path.join(directory, folder), image_size)
                if os.path.isdir(os.path.join(directory, folder)) else None
                for name, folder in SPLIT_DIRS}
    return {"train": _read_pairs(directory, image_size), "val": None, "test": None}


def _subfolder(directory: str, names: Sequence[str], what: str) -> str:
    for name in names:
        if os.path.isdir(os.path.join(directory, name)):
            return os.path.join(directory, name)
    raise UsageError(f"segfolder:{directory}: no {what} folder; expected one of {', '.join(names)}")


def _by_stem(folder: str) -> dict[str, str]:
    return {os.path.splitext(f)[0]: os.path.join(folder, f) for f in image_files(folder)}


def _read_pairs(directory: str, image_size: int) -> Split:
    """The pairs of one folder, read lazily: images and masks are decoded when a batch needs
    them (`verify()` checks their headers: readable, single-channel masks, sizes that match)."""
    images_dir = _subfolder(directory, IMAGE_DIRS, "image")
    masks_dir = _subfolder(directory, MASK_DIRS, "mask")
    images, masks = _by_stem(images_dir), _by_stem(masks_dir)
    unpaired = sorted(set(images) ^ set(masks))
    if unpaired:
        where = [images.get(s) or masks[s] for s in unpaired[:3]]
        raise UsageError(f"segfolder:{directory}: {len(unpaired)} unpaired file(s), e.g. "
                         f"{', '.join(where)}; every image needs a mask of the same name")
    if not images:
        raise UsageError(f"segfolder:{directory}: the data set is empty (no image/mask pairs)")
    stems = sorted(images)
    image_of = {masks[s]: images[s] for s in stems}
    binary = _binary_masks([masks[s] for s in stems])

    def read(path: str) -> np.ndarray:
        return resize_pair(read_image(path), None, image_size)[0]

    def read_mask_row(path: str) -> np.ndarray:
        mask = read_mask(path, binary)
        return resize_mask(mask, (image_size, image_size)) if image_size else mask

    def image_shape_of(path: str) -> tuple[int, int, int]:
        h, w, c = image_shape(path)
        return (image_size, image_size, c) if image_size else (h, w, c)

    def mask_shape_of(path: str) -> tuple[int, int]:
        h, w = _mask_size(path)
        image_h, image_w, _ = image_shape(image_of[path])
        if (h, w) != (image_h, image_w):
            raise UsageError(f"{path}: mask of size {w}x{h} but its image {image_of[path]} is "
                             f"{image_w}x{image_h}; they must match")
        return (image_size, image_size) if image_size else (h, w)

    first = read(images[stems[0]])
    image_rows = LazyImages.from_files([images[s] for s in stems], first.shape, read, image_shape_of,
                                       several_sizes=SEVERAL_SIZES)
    mask_rows = LazyImages.from_files([masks[s] for s in stems], first.shape[:2], read_mask_row,
                                      mask_shape_of, dtype=np.int32, several_sizes=SEVERAL_SIZES)
    return Split(image_rows, masks=mask_rows, files=np.array([masks[s] for s in stems]))


SEVERAL_SIZES = "set data.image_size to resize them all"
BINARY_SAMPLE = 16  # masks read at the start to tell 0/255 binary masks from class ids
MASK_MODES = ("L", "P", "1", "I", "I;16")


def _binary_masks(paths: Sequence[str]) -> bool:
    """Whether the masks are binary ones drawn as 0/255 (read as 0/1): told from up to
    BINARY_SAMPLE masks spread over the folder, so that the start reads a few files, not all."""
    sample = [paths[i] for i in np.unique(np.linspace(0, len(paths) - 1, BINARY_SAMPLE).astype(int))]
    values = [set(np.unique(read_mask(path)).tolist()) for path in sample]
    return all(v <= {0, 255} for v in values) and any(255 in v for v in values)  # all-0 masks say nothing


def _mask_size(path: str) -> tuple[int, int]:
    """(H, W) of a mask file from its header, checking that it holds class ids."""
    with open_image(path, "mask") as image:
        _check_mask_mode(image, path)
        return image.height, image.width


def _check_mask_mode(image, path: str) -> None:
    if image.mode not in MASK_MODES:
        raise UsageError(f"{path}: mask has {image.mode} pixels; masks must be single-channel "
                         "images of class ids (greyscale or palette PNG)")


def read_mask(path: str, binary: bool = False) -> np.ndarray:
    """int32 (H, W) class ids from a single-channel (greyscale or palette) image; with `binary`,
    a 0/255 mask read as 0/1 (any other value is an error: the folder's masks are binary)."""
    with open_image(path, "mask") as image:
        _check_mask_mode(image, path)
        mask = np.asarray(image).astype(np.int32)
    if not binary:
        return mask
    if not np.isin(mask, (0, 255)).all():
        other = int(mask[~np.isin(mask, (0, 255))][0])
        raise UsageError(f"{path}: mask holds value {other}, but the folder's masks are binary (0 and 255); "
                         "write every mask as class ids, or every one as 0/255")
    return (mask == 255).astype(np.int32)


def resize_pair(image: np.ndarray, mask: np.ndarray | None, size: int):
    """Both to size x size (0 = unchanged): bilinear for the uint8 image, nearest for the mask."""
    if not size or image.shape[:2] == (size, size):
        return image, mask
    return resize_image(image, size), None if mask is None else resize_mask(mask, (size, size))


def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Class ids resized to (height, width) by nearest neighbour: no id is ever blended."""
    from PIL import Image

    return np.asarray(Image.fromarray(mask.astype(np.int32)).resize(
        (shape[1], shape[0]), Image.Resampling.NEAREST)).astype(np.int32)


# --- generated digit scenes --------------------------------------------------

def make_scenes(digits: Split, count: int, canvas: int, min_digits: int, max_digits: int,
                ink_threshold: float, seed: int) -> Split:
    """`count` canvases of `min_digits..max_digits` non-overlapping digits, with masks
    of class (label + 1) where a digit's ink >= ink_threshold and 0 elsewhere."""
    if digits.labels is None or digits.images.shape[-1] != 1:
        raise UsageError("scenes need greyscale digits with labels (e.g. scenes:idx:DIR, scenes:digits)")
    size = digits.images.shape[1]
    if size > canvas or digits.images.shape[2] != size:
        raise UsageError(f"data.scenes.canvas={canvas} is smaller than the {size}x{size} digits")
    rng = np.random.default_rng([seed, count, canvas])
    images = np.zeros((count, canvas, canvas, 1), np.float32)
    masks = np.zeros((count, canvas, canvas), np.int32)
    for n in range(count):
        for y, x in _place(rng, rng.integers(min_digits, max_digits + 1), size, canvas):
            k = rng.integers(len(digits))
            ink = digits.images[k, :, :, 0]
            images[n, y:y + size, x:x + size, 0] = ink
            masks[n, y:y + size, x:x + size] = np.where(ink >= ink_threshold, digits.labels[k] + 1, 0)
    return Split(images, masks=masks)


def _place(rng: np.random.Generator, count: int, size: int, canvas: int) -> list[tuple[int, int]]:
    """Top-left corners of up to `count` non-overlapping size x size boxes (rejection sampling)."""
    corners: list[tuple[int, int]] = []
    for _ in range(50 * count):
        if len(corners) == count:
            break
        y, x = rng.integers(0, canvas - size + 1, size=2)
        if all(abs(y - cy) >= size or abs(x - cx) >= size for cy, cx in corners):
            corners.append((int(y), int(x)))
    return corners


def read_scenes(digits: dict[str, Split | None], scenes: ml_collections.ConfigDict,
                seed: int, test_fraction: float) -> dict[str, Split | None]:
    """Scenes from the train digits (train, validation carved later) and the test digits (the
    source's test split, or digits carved from its train split: `digit_pools`)."""
    if not 1 <= scenes.min_digits <= scenes.max_digits:
        raise UsageError(f"data.scenes.min_digits={scenes.min_digits} and max_digits={scenes.max_digits} "
                         "must satisfy 1 <= min_digits <= max_digits")
    if scenes.num_train < 2 or scenes.num_test < 1:
        raise UsageError(f"data.scenes.num_train={scenes.num_train} must be >= 2 and "
                         f"num_test={scenes.num_test} >= 1")
    if not 0.0 < scenes.ink_threshold <= 1.0:
        raise UsageError(f"data.scenes.ink_threshold={scenes.ink_threshold} must lie in (0, 1]")
    train_digits, test_digits = digit_pools(digits, test_fraction, seed)
    make = lambda split, count, s: make_scenes(split, count, scenes.canvas, scenes.min_digits,
                                              scenes.max_digits, scenes.ink_threshold, s)
    return {"train": make(train_digits, scenes.num_train, seed), "val": None,
            "test": make(test_digits, scenes.num_test, seed + 1)}


# --- TFDS --------------------------------------------------------------------

def read_tfds_examples(source, name: str, split: str, image_key: str, mask_key: str,
                       mask_offset: int, image_size: int) -> Split:
    """A TFDS split with a mask feature, resized to image_size (TFDS images vary in size)."""
    example = source[0]
    for key in (image_key, mask_key):
        if key not in example:
            raise UsageError(f"tfds:{name}: no feature {key!r}; features: {sorted(example)}")
    images, masks = [], []
    for i in range(len(source)):
        ex = source[i]
        image, mask = np.asarray(ex[image_key]), np.asarray(ex[mask_key])
        mask = (mask[..., 0] if mask.ndim == 3 else mask).astype(np.int32) - mask_offset
        if image.shape[:2] != mask.shape:
            raise UsageError(f"tfds:{name}[{split}] example {i}: mask of shape {mask.shape} "
                             f"but image {image.shape[:2]}; they must match")
        image, mask = resize_pair(image, mask, image_size)
        images.append(image)
        masks.append(mask)
    if len({i.shape for i in images}) > 1:
        raise UsageError(f"tfds:{name}: images vary in size; set data.image_size to resize them")
    return Split(to_unit_float(np.stack(images), f"tfds:{name}[{split}]"), masks=np.stack(masks))

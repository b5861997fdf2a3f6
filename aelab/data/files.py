"""Readers for user files: `csv:FILE` (numeric tables) and `images:DIR` (image folders)."""

from __future__ import annotations

import contextlib
import csv
import os

import numpy as np

from aelab.data.lazy import LazyImages
from aelab.data.splits import Split, make_split
from aelab.errors import UsageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")
GREY_MODES = ("L", "1", "I;16")  # PIL modes read as one channel; any other becomes RGB


def relative_entry(name: str, where: str) -> str:
    """`name`, a path read from a data file, if it stays inside the data folder; else a
    UsageError naming it (an absolute path, or one that climbs out with "..")."""
    if os.path.isabs(name) or os.path.normpath(name).split(os.sep)[0] == "..":
        raise UsageError(f"{where}: entry {name!r} points outside the data folder; "
                         "entries must be paths relative to it")
    return name


def read_csv(path: str, label_column: str) -> dict[str, Split | None]:
    """A numeric CSV, one example a row, as (N, 1, D, 1) "images" scaled per column to [0, 1].

    A first row that is not all numbers is a header. `label_column` (a header
    name, or a 0-based index) is taken out as integer labels; "" means none.
    Scaling is min-max per column over the whole file (a constant column maps to 0).
    """
    if not os.path.isfile(path):
        raise UsageError(f"csv:{path}: no such file")
    with open(path, newline="") as f:
        rows = [row for row in csv.reader(f) if row]
    if not rows:
        raise UsageError(f"csv:{path}: the data set is empty")
    header = None
    if not all(_is_number(cell) for cell in rows[0]):
        header, rows = [cell.strip() for cell in rows[0]], rows[1:]
    if not rows:
        raise UsageError(f"csv:{path}: the data set is empty (only a header)")
    width = len(header or rows[0])
    names = header or [str(i) for i in range(width)]
    table = np.empty((len(rows), width), dtype=np.float64)
    for r, row in enumerate(rows):
        line = r + (2 if header else 1)
        if len(row) != width:
            raise UsageError(f"csv:{path}: line {line} has {len(row)} cells; expected {width}")
        for c, cell in enumerate(row):
            try:
                table[r, c] = float(cell)
            except ValueError:
                raise UsageError(
                    f"csv:{path}: line {line}, column {names[c]!r}: {cell!r} is not a number") from None
            if not np.isfinite(table[r, c]):
                raise UsageError(f"csv:{path}: line {line}, column {names[c]!r}: {cell!r} is not finite")
    labels = None
    if label_column != "":
        if label_column in names:
            index = names.index(label_column)
        elif label_column.isdigit() and int(label_column) < width:
            index = int(label_column)
        else:
            raise UsageError(f"csv:{path}: no label column {label_column!r}; columns: {', '.join(names)}")
        labels = table[:, index].astype(np.int64)
        table = np.delete(table, index, axis=1)
    low, high = table.min(axis=0), table.max(axis=0)
    scaled = (table - low) / np.where(high > low, high - low, 1.0)
    images = scaled.astype(np.float32)[:, None, :, None]
    return {"train": make_split(images, labels, f"csv:{path}"), "val": None, "test": None}


def _is_number(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False


def square_and_resize(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 (H, W, C) cut to its central square and resized to (size, size, C), bilinear
    (antialiased when shrinking); size 0 leaves it as it is. CelebA's 218x178 faces become the
    usual 64x64 this way."""
    if not size or image.shape[:2] == (size, size):
        return image
    h, w, _ = image.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return resize_image(image[top:top + side, left:left + side], size)


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 (H, W, C) resized to (size, size, C), bilinear (antialiased when shrinking)."""
    from PIL import Image

    channels = image.shape[-1]
    resized = Image.fromarray(image[..., 0] if channels == 1 else image).resize(
        (size, size), Image.Resampling.BILINEAR)
    return np.asarray(resized).reshape(size, size, channels)


def read_images(directory: str, image_size: int = 0) -> dict[str, Split | None]:
    """An image folder: `DIR/<class>/*.png` (labels from sorted class names) or `DIR/*.png`.

    With `train/` and `test/` (and optionally `val/`) subfolders, each is a split.
    Greyscale images keep one channel, anything else becomes RGB; all must share one size.
    Only the first image is read here: the others are decoded when a batch needs them.
    With `image_size`, each is cut to its central square and resized to that size. Hidden files
    and folders (.thumbs/, .DS_Store) are no part of the data set; a folder that holds both
    images and subfolders is refused, naming one of each (which would be the data set?).
    """
    if not os.path.isdir(directory):
        raise UsageError(f"images:{directory}: no such directory")
    splits: dict[str, Split | None] = {"train": None, "val": None, "test": None}
    if os.path.isdir(os.path.join(directory, "train")):
        extra = [n for n in visible(directory) if n not in ("train", "val", "test")
                 and (os.path.isdir(os.path.join(directory, n)) or n.lower().endswith(IMAGE_EXTENSIONS))]
        if extra:
            raise UsageError(f"images:{directory} holds train/ and also {extra[0]!r}; keep only the train/, val/ and "
                             "test/ folders, or no split folders at all")
        for name, folder in (("train", "train"), ("val", "val"), ("test", "test")):
            if os.path.isdir(os.path.join(directory, folder)):
                splits[name] = _read_image_folder(os.path.join(directory, folder), image_size)
    else:
        splits["train"] = _read_image_folder(directory, image_size)
    return splits


def visible(directory: str) -> list[str]:
    """The sorted names in `directory`, hidden ones (.name) left out."""
    return sorted(name for name in os.listdir(directory) if not name.startswith("."))


def image_files(directory: str) -> list[str]:
    """The sorted names of the visible image files in `directory` (not folders named like one)."""
    return [name for name in visible(directory)
            if name.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(directory, name))]


# The most pixels an image may declare: a 16-megabyte PNG can declare 20000 x 20000 (a
# decompression bomb, gigabytes decoded). aelab checks each file's header against it, naming the
# file; PIL's own check (a warning at one size, an error at twice that) is off.
MAX_PIXELS = 2 ** 26  # 8192 x 8192


@contextlib.contextmanager
def open_image(path: str, what: str = "image"):
    """The PIL image of `path`, its header read (not decoded), refused when it declares more than
    MAX_PIXELS pixels; an unreadable file is a UsageError naming it."""
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = None  # the check below replaces it
    try:
        with Image.open(path) as image:
            if image.width * image.height > MAX_PIXELS:
                raise UsageError(f"{path}: {what} of {image.width} x {image.height} pixels, above aelab's limit "
                                 f"of {MAX_PIXELS:,} pixels a file (a decompression bomb, or an image to shrink "
                                 "first)")
            yield image
    except UsageError:
        raise
    except (OSError, UnidentifiedImageError, ValueError) as e:  # ValueError: PIL's for a broken header
        raise UsageError(f"{path}: cannot read {what} ({e})") from None


def read_image(path: str, channels: int | None = None) -> np.ndarray:
    """uint8 (H, W, C). channels=None keeps greyscale as one channel and makes anything else
    RGB; channels=1 or 3 converts to that."""
    with open_image(path) as image:
        grey = image.mode in GREY_MODES if channels is None else channels == 1
        array = np.asarray(image.convert("L" if grey else "RGB"))
    return array[..., None] if array.ndim == 2 else array


def image_shape(path: str) -> tuple[int, int, int]:
    """(H, W, C) of an image file as `read_image` returns it, from its header (no decoding)."""
    with open_image(path) as image:
        return image.height, image.width, 1 if image.mode in GREY_MODES else 3


def _read_image_folder(directory: str, image_size: int = 0) -> Split:
    classes = [name for name in visible(directory) if os.path.isdir(os.path.join(directory, name))]
    here = image_files(directory)
    if classes and here:
        raise UsageError(f"images:{directory} holds both images ({here[0]!r}, ...) and folders ({classes[0]!r}, ...); "
                         "put every image in a class folder, or keep only the images")
    entries = ([(os.path.join(directory, c, f), i) for i, c in enumerate(classes)
                for f in image_files(os.path.join(directory, c))] if classes else
               [(os.path.join(directory, f), None) for f in here])
    if not entries:
        raise UsageError(f"images:{directory}: the data set is empty (no {'/'.join(IMAGE_EXTENSIONS)} files)")

    def read(path: str) -> np.ndarray:
        return square_and_resize(read_image(path), image_size)

    def shape_of(path: str) -> tuple[int, int, int]:
        h, w, c = image_shape(path)
        return (image_size, image_size, c) if image_size else (h, w, c)

    shape = read(entries[0][0]).shape  # the others are checked as they are read
    images = LazyImages.from_files([path for path, _ in entries], shape, read, shape_of)
    labels = np.array([label for _, label in entries]) if classes else None
    return make_split(images, labels, f"images:{directory}")

"""Data splits (in memory, or streamed from disk) and the deterministic carving of validation/test sets."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np

from aelab.data.lazy import LazyImages, take_rows
from aelab.errors import UsageError


@dataclasses.dataclass(frozen=True)
class Split:
    """Images as float32 (N, H, W, C) in [0, 1], with optional int labels (N,), for
    segmentation int32 masks (N, H, W) of per-pixel class ids, where the examples come
    from files, the file of each (N,) for messages that name it, and for generated sets the
    index of each factor of variation (N, F) (aelab.data.factors)."""

    images: np.ndarray
    labels: np.ndarray | None = None
    masks: np.ndarray | None = None
    files: np.ndarray | None = None
    factors: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.images)

    def take(self, index: np.ndarray) -> "Split":
        def rows(array):
            return None if array is None else take_rows(array, index)
        return Split(rows(self.images), rows(self.labels), rows(self.masks), rows(self.files), rows(self.factors))

    @property
    def streamed(self) -> bool:
        """Whether the images stay on disk until a batch reads them (aelab.data.lazy)."""
        return isinstance(self.images, LazyImages)

    def in_memory(self) -> "Split":
        """This split with every image (and mask) read (itself if they already are)."""
        if not self.streamed:
            return self
        masks = np.asarray(self.masks) if isinstance(self.masks, LazyImages) else self.masks
        return dataclasses.replace(self, images=np.asarray(self.images), masks=masks)

    def figure_rows(self, n: int, seed: int = 0) -> np.ndarray:
        """The rows a figure shows: `n` drawn across the classes (seeded; shown_rows)."""
        return shown_rows(len(self), n, self.labels, seed)

    def verify(self) -> None:
        """Checks the headers of every lazily read file (LazyImages.verify)."""
        for rows in (self.images, self.masks):
            if isinstance(rows, LazyImages):
                rows.verify()

    @property
    def decoded_bytes(self) -> int:
        """What the split's images (and masks) take in memory, read or not."""
        return sum(rows.nbytes for rows in (self.images, self.masks) if rows is not None)

    @property
    def example_shape(self) -> tuple[int, ...]:
        return tuple(self.images.shape[1:])

    def arrays(self) -> dict[str, np.ndarray]:
        """The per-example arrays a batch holds, by batch key."""
        out = {"image": self.images}
        if self.labels is not None:
            out["label"] = self.labels
        if self.masks is not None:
            out["segmentation"] = self.masks
        return out


@dataclasses.dataclass(frozen=True)
class Dataset:
    """The three splits every task sees; `test` is what "eval" reports. Splits are image
    `Split`s, or text splits (aelab.data.text) for sequence tasks; `info` holds counts a
    reader wants reported (e.g. skipped lines). Loaded for one split only (a use's
    `load(..., only=)`), the others are None."""

    name: str
    train: Split
    val: Split
    test: Split
    info: dict = dataclasses.field(default_factory=dict)

    @property
    def first(self) -> Split:
        """The first split it holds: train, unless it was loaded for one split only."""
        return next(s for s in (self.train, self.val, self.test) if s is not None)

    @property
    def image_shape(self) -> tuple[int, ...]:
        """The shape of one example (an image's (H, W, C); a token row's (max_length,))."""
        return self.first.example_shape

    def split(self, name: str) -> Split:
        if name not in ("train", "val", "test"):
            raise UsageError(f"unknown split {name!r}; known: test, train, val")
        return getattr(self, name)


def shown_rows(count: int, n: int, labels: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """`n` of `count` rows for a figure, drawn with `seed`: one of each class in turn (the classes
    in a seeded order) where there are labels, so a class-sorted folder does not show one class
    only; a seeded random sample otherwise."""
    rng = np.random.default_rng([seed, count])
    n = min(n, count)
    if labels is None:
        return np.sort(rng.choice(count, n, replace=False))
    classes = rng.permutation(np.unique(labels))
    members = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    rounds = [[m[i] for m in members if i < len(m)] for i in range(max(map(len, members)))]
    return np.array([row for r in rounds for row in r][:n])


def to_unit_float(images: np.ndarray, where: str) -> np.ndarray:
    """Scales images to float32 in [0, 1] and to rank 4 (N, H, W, C).

    uint8 is divided by 255; floats must already lie in [0, 1].
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise UsageError(
            f"{where}: images have shape {images.shape}; expected (N, H, W) or (N, H, W, C)")
    if len(images) == 0:
        raise UsageError(f"{where}: the data set is empty")
    if images.dtype == np.uint8:
        return images.astype(np.float32) / np.float32(255.0)
    if not np.issubdtype(images.dtype, np.floating) and not np.issubdtype(images.dtype, np.integer):
        raise UsageError(f"{where}: images have dtype {images.dtype}; expected uint8 or float")
    images = images.astype(np.float32)
    if not np.all(np.isfinite(images)):
        raise UsageError(f"{where}: {np.count_nonzero(~np.isfinite(images))} pixel values are NaN or "
                         "infinite; expected uint8 or floats in [0, 1]")
    if images.min() < 0.0 or images.max() > 1.0:
        raise UsageError(
            f"{where}: pixel values span [{images.min():g}, {images.max():g}]; "
            "expected uint8 or floats in [0, 1]")
    return images


def make_split(images, labels, where: str) -> Split:
    if not isinstance(images, LazyImages):
        images = to_unit_float(images, where)
    elif len(images) == 0:
        raise UsageError(f"{where}: the data set is empty")
    if labels is not None:
        labels = np.asarray(labels).astype(np.int64).reshape(-1)
        if len(labels) != len(images):
            raise UsageError(
                f"{where}: {len(images)} images but {len(labels)} labels; the counts must match")
    return Split(images, labels)


def digit_pools(digits: dict, test_fraction: float, seed: int) -> tuple[Split, Split]:
    """(train digits, test digits) of the data set that generated scenes are built from: its own
    test split, or, where it has none, one carved from train (`fraction`, `seed`), so that no
    digit image appears in scenes of both splits."""
    if digits.get("test") is not None:
        return digits["train"], digits["test"]
    return carve(digits["train"], test_fraction, seed, "test digits")


SPLIT_BY = ("example", "block", "source")


def carve(split, fraction: float, seed: int, what: str, by: str = "example") -> tuple:
    """Splits off `fraction` of `split`, fixed by `seed`; returns (rest, carved).

    `by` says what may not straddle the two sides: "example" carves a seeded random subset;
    "block" one contiguous run of examples at a seeded place (slices of a stack, frames of a
    video: only the run's two edge examples have a neighbour on the other side); "source" whole
    groups of pairs sharing a normalized source sentence (`split.source_keys()`), so no source
    sentence is on both sides. The seed is the data seed, not the training seed, so every run of
    a sweep sees the same validation set.
    """
    n = len(split)
    n_carved = int(round(n * fraction))
    if not 0 < n_carved < n:
        raise UsageError(
            f"cannot carve a {what} split of fraction {fraction} from {n} examples; "
            "use a fraction that leaves at least one example on each side")
    rng = np.random.default_rng([seed, n])
    if by == "example":
        order = rng.permutation(n)
        return split.take(np.sort(order[n_carved:])), split.take(np.sort(order[:n_carved]))
    carved = np.zeros(n, dtype=bool)
    if by == "block":
        start = int(rng.integers(0, n - n_carved + 1))
        carved[start:start + n_carved] = True
    elif by == "source":
        _, group = np.unique(split.source_keys(), return_inverse=True)
        order = rng.permutation(group.max() + 1)
        taken = np.searchsorted(np.cumsum(np.bincount(group)[order]), n_carved) + 1
        carved = np.isin(group, order[:taken])
        if carved.all():
            raise UsageError(f"cannot carve a {what} split of fraction {fraction}: one source sentence "
                             f"covers {n} pairs; use data.split_by=example")
    else:
        raise UsageError(f"data.split_by={by!r} is not known; accepted: {', '.join(SPLIT_BY)}")
    return split.take(np.flatnonzero(~carved)), split.take(np.flatnonzero(carved))


def fingerprint(dataset: "Dataset") -> dict[str, dict]:
    """{split: {"count", "sha256"}}: what a run trained and was evaluated on, so that a resume on
    other data (files added, a split carved anew) is noticed. In-memory arrays are hashed whole;
    streamed ones by where each row comes from (LazyImages.identity)."""
    return {name: {"count": len(split), "sha256": split_digest(split)}
            for name in ("train", "val", "test") if (split := dataset.split(name)) is not None}


def split_digest(split) -> str:
    """The SHA-256 of a split's rows, whatever holds them (images, labels, masks, text)."""
    digest = hashlib.sha256()
    for field in dataclasses.fields(split):
        value = getattr(split, field.name)
        if value is None:
            continue
        digest.update(field.name.encode())
        if isinstance(value, LazyImages):
            digest.update(value.identity())
        elif isinstance(value, np.ndarray) and value.dtype != object:
            digest.update(repr((value.dtype.str, value.shape)).encode())
            digest.update(np.ascontiguousarray(value).tobytes())
        else:  # sentences, reference captions (object arrays)
            digest.update(json.dumps(np.asarray(value, dtype=object).tolist(), default=list,
                                     ensure_ascii=False).encode())
    return digest.hexdigest()

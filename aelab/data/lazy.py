"""Images read on demand: a split larger than memory stays on disk until a batch asks for its rows.

`LazyImages` behaves like the (N, H, W, C) float32 array in [0, 1] that an in-memory `Split`
holds where batching needs it (or, with `dtype=np.int32`, like the (N, H, W) array of a
segmentation split's masks: class ids, unscaled) (`len`, `shape`, `x[int]`, `x[slice]`, `x[index array]`), but
decodes only the rows asked for: from image files, or from a uint8 array that may be a memory
map. `take(index)` selects rows without reading any; `np.asarray(x)` reads them all (threads).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
from typing import Callable, Sequence

import numpy as np

from aelab.errors import UsageError

READ_THREADS = min(8, os.cpu_count() or 1)


class LazyImages:
    """Rows `read(i)` (uint8 or float (H, W, C)) of a source of `count` images of one `shape`,
    scaled to float32 in [0, 1] when asked for (integer `dtype`: converted, not scaled); `index`
    maps this view's rows to the source's."""

    def __init__(self, read: Callable[[int], np.ndarray], shape: Sequence[int], count: int,
                 describe: Callable[[int], str], index: np.ndarray | None = None,
                 check: Callable[[int], None] | None = None,
                 read_rows: Callable[[np.ndarray], np.ndarray] | None = None, dtype=np.float32):
        self._read, self._shape, self._describe, self._check = read, tuple(shape), describe, check
        self._read_rows = read_rows  # many rows at once, where the source can (an array)
        self._index = np.arange(count) if index is None else np.asarray(index)
        self.dtype = np.dtype(dtype)

    @classmethod
    def from_array(cls, array: np.ndarray, where: str) -> "LazyImages":
        """uint8 rows (N, H, W[, C]) of an array or memory map, converted row by row."""
        if array.dtype != np.uint8 or array.ndim not in (3, 4):
            raise UsageError(f"{where}: images have dtype {array.dtype} and shape {array.shape}; "
                             "streaming reads uint8 (N, H, W) or (N, H, W, C)")
        shape = array.shape[1:] if array.ndim == 4 else (*array.shape[1:], 1)
        return cls(lambda i: array[i].reshape(shape), shape, len(array), lambda i: f"{where}[{i}]",
                   read_rows=lambda rows: array[rows].reshape(len(rows), *shape))

    @classmethod
    def from_files(cls, paths: Sequence[str], shape: Sequence[int], read_file: Callable[[str], np.ndarray],
                   read_shape: Callable[[str], tuple[int, ...]], dtype=np.float32,
                   several_sizes: str = "") -> "LazyImages":
        """Image files of one `shape` (H, W, C), decoded by `read_file` when a batch needs them;
        `read_shape` (from the file's header) is what `verify()` checks; `several_sizes`, a
        hint the message of a file of another shape ends with."""
        paths = np.asarray(paths)

        def same_shape(i: int, found: tuple[int, ...]) -> None:
            if found != tuple(shape):
                raise UsageError(f"{paths[i]}: image of shape {found}, but {paths[0]} has "
                                 f"{tuple(shape)}; all images must share one shape"
                                 + (f" ({several_sizes})" if several_sizes else ""))

        def read(i: int) -> np.ndarray:
            array = read_file(str(paths[i]))
            same_shape(i, array.shape)
            return array

        return cls(read, shape, len(paths), lambda i: str(paths[i]),
                   check=lambda i: same_shape(i, read_shape(str(paths[i]))), dtype=dtype)

    # --- the array-like surface batching uses ---------------------------------------------
    def __len__(self) -> int:
        return len(self._index)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self._shape)

    @property
    def ndim(self) -> int:
        return 1 + len(self._shape)

    @property
    def nbytes(self) -> int:
        """The size the rows would have decoded: what an in-memory split would take."""
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def _converted(self, rows: np.ndarray) -> np.ndarray:
        if self.dtype.kind == "f" and rows.dtype == np.uint8:
            return rows.astype(self.dtype) / self.dtype.type(255.0)
        return rows.astype(self.dtype)

    def _row(self, source_row: int) -> np.ndarray:
        return self._converted(self._read(int(source_row)))

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self._row(self._index[key])
        rows = self._index[key]
        if self._read_rows is not None:
            return self._converted(self._read_rows(rows))
        out = np.empty((len(rows), *self._shape), self.dtype)
        for j, source_row in enumerate(rows):
            out[j] = self._row(source_row)
        return out

    def raw(self, rows: np.ndarray) -> np.ndarray:
        """The rows as the source holds them (uint8 pixels, unscaled), for converting."""
        source_rows = self._index[rows]
        if self._read_rows is not None:
            return self._read_rows(source_rows)
        return np.stack([self._read(int(i)) for i in source_rows])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = np.empty(self.shape, self.dtype)
        chunks = np.array_split(np.arange(len(self)), max(1, len(self) // 256))
        with concurrent.futures.ThreadPoolExecutor(READ_THREADS) as pool:  # decoders release the GIL
            for chunk, rows in zip(chunks, pool.map(self.__getitem__, chunks)):
                out[chunk] = rows
        return out if dtype is None else out.astype(dtype)

    def take(self, index: np.ndarray) -> "LazyImages":
        """The rows `index` of this view, still unread."""
        return LazyImages(self._read, self._shape, 0, self._describe, self._index[np.asarray(index)],
                          self._check, self._read_rows, self.dtype)

    def verify(self) -> None:
        """Checks every row without decoding it (an image file's header: readable, the shape of
        the others); raises the UsageError of the first bad one, before any training."""
        if self._check is None:
            return
        with concurrent.futures.ThreadPoolExecutor(READ_THREADS) as pool:
            for _ in pool.map(self._check, self._index, chunksize=256):
                pass

    def identity(self) -> bytes:
        """A digest of which rows this view holds: where each is read from and, for files, each
        file's size. Reading no pixel, it tells apart another membership or another file."""
        digest = hashlib.sha256(repr(self._shape).encode())
        for source_row in self._index:
            place = self._describe(int(source_row))
            digest.update(place.encode("utf-8", "surrogateescape") + b"\0")
            if os.path.isfile(place):
                digest.update(str(os.path.getsize(place)).encode())
        return digest.digest()

    def where(self, row: int) -> str:
        """The file (or array row) that row `row` is read from, for messages."""
        return self._describe(int(self._index[row]))


def take_rows(rows, index: np.ndarray):
    """rows[index] of an array, or of a LazyImages without reading them."""
    return rows.take(index) if isinstance(rows, LazyImages) else rows[index]


CHUNK_MB = 32  # what one pass over a streamed split holds in memory at a time


def row_chunks(rows, chunk_mb: float | None = None):
    """(start, rows[start:stop] as an array) over every row, about `chunk_mb` MiB a chunk once read:
    a pass over a streamed split in bounded memory (an in-memory array passes in views)."""
    if isinstance(rows, np.ndarray):
        yield 0, rows
        return
    step = max(1, int((chunk_mb or CHUNK_MB) * 2 ** 20 // max(1, rows.nbytes // max(1, len(rows)))))
    for start in range(0, len(rows), step):
        yield start, rows[start:start + step]

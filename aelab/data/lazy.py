"""Images read on demand: a split larger than memory stays on disk until a batch asks for its rows.

`LazyImages` behaves like the (N, H, W, C) float32 array in [0, 1] that an in-memory `Split`
holds where batching needs it (`len`, `shape`, `x[int]`, `x[slice]`, `x[index array]`), but
decodes only the rows asked for: from image files, or from a uint8 array that may be a memory
map. `take(index)` selects rows without reading any; `np.asarray(x)` reads them all (threads).
"""

from __future__ import annotations

import concurrent.futures
import os
from typing import Callable, Sequence

import numpy as np

from aelab.errors import UsageError

READ_THREADS = min(8, os.cpu_count() or 1)


class LazyImages:
    """Rows `read(i)` (uint8 or float (H, W, C)) of a source of `count` images of one `shape`,
    scaled to float32 in [0, 1] when asked for; `index` maps this view's rows to the source's."""

    def __init__(self, read: Callable[[int], np.ndarray], shape: Sequence[int], count: int,
                 describe: Callable[[int], str], index: np.ndarray | None = None,
                 check: Callable[[int], None] | None = None,
                 read_rows: Callable[[np.ndarray], np.ndarray] | None = None):
        self._read, self._shape, self._describe, self._check = read, tuple(shape), describe, check
        self._read_rows = read_rows  # many rows at once, where the source can (an array)
        self._index = np.arange(count) if index is None else np.asarray(index)

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
                   read_shape: Callable[[str], tuple[int, ...]]) -> "LazyImages":
        """Image files of one `shape` (H, W, C), decoded by `read_file` when a batch needs them;
        `read_shape` (from the file's header) is what `verify()` checks."""
        paths = np.asarray(paths)

        def same_shape(i: int, found: tuple[int, ...]) -> None:
            if found != tuple(shape):
                raise UsageError(f"{paths[i]}: image of shape {found}, but {paths[0]} has "
                                 f"{tuple(shape)}; all images must share one shape")

        def read(i: int) -> np.ndarray:
            array = read_file(str(paths[i]))
            same_shape(i, array.shape)
            return array

        return cls(read, shape, len(paths), lambda i: str(paths[i]),
                   check=lambda i: same_shape(i, read_shape(str(paths[i]))))

    # --- the array-like surface batching uses ---------------------------------------------
    dtype = np.dtype(np.float32)
    ndim = 4

    def __len__(self) -> int:
        return len(self._index)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self._shape)

    @property
    def nbytes(self) -> int:
        """The size the rows would have decoded (float32): what an in-memory split would take."""
        return int(np.prod(self.shape)) * 4

    def _row(self, source_row: int) -> np.ndarray:
        row = self._read(int(source_row))
        return row.astype(np.float32) / np.float32(255.0) if row.dtype == np.uint8 else row.astype(np.float32)

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self._row(self._index[key])
        rows = self._index[key]
        if self._read_rows is not None:
            return self._read_rows(rows).astype(np.float32) / np.float32(255.0)
        out = np.empty((len(rows), *self._shape), np.float32)
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
        out = np.empty(self.shape, np.float32)
        chunks = np.array_split(np.arange(len(self)), max(1, len(self) // 256))
        with concurrent.futures.ThreadPoolExecutor(READ_THREADS) as pool:  # decoders release the GIL
            for chunk, rows in zip(chunks, pool.map(self.__getitem__, chunks)):
                out[chunk] = rows
        return out if dtype is None else out.astype(dtype)

    def take(self, index: np.ndarray) -> "LazyImages":
        """The rows `index` of this view, still unread."""
        return LazyImages(self._read, self._shape, 0, self._describe, self._index[np.asarray(index)],
                          self._check, self._read_rows)

    def verify(self) -> None:
        """Checks every row without decoding it (an image file's header: readable, the shape of
        the others); raises the UsageError of the first bad one, before any training."""
        if self._check is None:
            return
        with concurrent.futures.ThreadPoolExecutor(READ_THREADS) as pool:
            for _ in pool.map(self._check, self._index, chunksize=256):
                pass

    def where(self, row: int) -> str:
        """The file (or array row) that row `row` is read from, for messages."""
        return self._describe(int(self._index[row]))

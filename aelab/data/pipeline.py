"""Batches as pure functions of (seed, step): exact resume needs only the step.

The order of an epoch is a permutation drawn from (seed, epoch); the batch of
step t is the slice of its epoch's permutation at t's position. Training
batches have a fixed shape (the last partial batch of an epoch is dropped);
evaluation batches are padded to a fixed shape and carry a 0/1 `mask` of real
examples. Segmentation masks (per-pixel class ids) travel as "segmentation".
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from aelab.data.splits import Split
from aelab.errors import UsageError


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


class TrainBatches:
    """`batches(step)` gives the training batch of `step`, the same on every call."""

    def __init__(self, split: Split, batch_size: int, seed: int):
        if batch_size > len(split):
            raise UsageError(
                f"train.batch_size={batch_size} is larger than the training split "
                f"({len(split)} examples); use a batch size of at most {len(split)}")
        self.split = split
        self.batch_size = batch_size
        self.seed = seed
        self.steps_per_epoch = len(split) // batch_size
        self._epoch = -1
        self._order = np.empty(0, dtype=np.int64)

    def indices(self, step: int) -> np.ndarray:
        epoch, position = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:  # one permutation per epoch, memoized
            self._epoch, self._order = epoch, epoch_permutation(self.seed, epoch, len(self.split))
        start = position * self.batch_size
        return self._order[start:start + self.batch_size]

    def __call__(self, step: int) -> dict[str, np.ndarray]:
        index = self.indices(step)
        batch = {"image": self.split.images[index]}
        if self.split.labels is not None:
            batch["label"] = self.split.labels[index]
        if self.split.masks is not None:
            batch["segmentation"] = self.split.masks[index]
        return batch


def eval_batches(split: Split, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    """The whole split in order, in batches of exactly `batch_size` with a `mask`."""
    batch_size = min(batch_size, len(split))
    for start in range(0, len(split), batch_size):
        images = split.images[start:start + batch_size]
        n = len(images)
        pad = batch_size - n
        batch = {
            "image": np.pad(images, [(0, pad)] + [(0, 0)] * (images.ndim - 1)),
            "mask": np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)]),
        }
        if split.labels is not None:
            batch["label"] = np.pad(split.labels[start:start + batch_size], (0, pad))
        if split.masks is not None:
            masks = split.masks[start:start + batch_size]
            batch["segmentation"] = np.pad(masks, [(0, pad)] + [(0, 0)] * (masks.ndim - 1))
        yield batch

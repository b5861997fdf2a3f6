"""Batches as pure functions of (seed, step): exact resume needs only the step.

The order of an epoch is a permutation drawn from (seed, epoch); the batch of
step t is the slice of its epoch's permutation at t's position. Training
batches have a fixed shape (the last partial batch of an epoch is dropped);
evaluation batches are padded to a fixed shape and carry a 0/1 `mask` of real
examples. A batch holds the split's `arrays()`: "image" (and "label",
"segmentation" masks of per-pixel class ids), or "source" and "target" token rows.

Bucketing (text): examples are grouped by length into buckets; each training
batch comes from one bucket and is cut to that bucket's length, so a few
compiled shapes replace one padded to the longest sentence.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any, Callable, Iterator

import numpy as np

from aelab import lifetime
from aelab.data.splits import Split
from aelab.errors import UsageError


class TrainBatches:
    """`batches(step)` gives the training batch of `step`, the same on every call."""

    def __init__(self, split: Split, batch_size: int, seed: int, bucket_lengths: tuple[int, ...] = ()):
        if batch_size > len(split):
            raise UsageError(
                f"train.batch_size={batch_size} is larger than the training split "
                f"({len(split)} examples); use a batch size of at most {len(split)}")
        self.split = split
        self.arrays = split.arrays()
        self.batch_size = batch_size
        self.seed = seed
        self._epoch = -1
        self._lock = threading.Lock()
        self._batches: list[np.ndarray] = []
        self.bucket_of = None
        if bucket_lengths:
            # Bucket b holds the examples no longer than bucket_lengths[b] (and longer than b-1's).
            self.bucket_lengths = np.asarray(sorted(bucket_lengths))
            self.bucket_of = np.searchsorted(self.bucket_lengths, split.lengths)
            if self.bucket_of.max() >= len(self.bucket_lengths):
                raise UsageError(f"text.buckets={tuple(bucket_lengths)}: the longest example has "
                                 f"{split.lengths.max()} tokens; the last bucket must hold it")
            counts = np.bincount(self.bucket_of, minlength=len(self.bucket_lengths))
            self.steps_per_epoch = int(sum(c // batch_size for c in counts))
        else:
            self.steps_per_epoch = len(split) // batch_size

    def __getstate__(self) -> dict:  # sent to input worker processes: no lock, no memo
        return {k: v for k, v in self.__dict__.items() if k not in ("_lock", "_batches", "_epoch")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _lock=threading.Lock(), _batches=[], _epoch=-1)

    def _epoch_batches(self, epoch: int) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.split))
        if self.bucket_of is None:
            return [order[i * self.batch_size:(i + 1) * self.batch_size]
                    for i in range(self.steps_per_epoch)]
        batches = []
        for b in range(len(self.bucket_lengths)):  # a random order within each bucket...
            members = order[self.bucket_of[order] == b]
            batches += [members[i:i + self.batch_size]
                        for i in range(0, len(members) - self.batch_size + 1, self.batch_size)]
        return [batches[i] for i in rng.permutation(len(batches))]  # ...and of the batches

    def indices(self, step: int) -> np.ndarray:
        epoch, position = divmod(step, self.steps_per_epoch)
        with self._lock:  # prefetching threads ask for steps on both sides of an epoch's end
            if epoch != self._epoch:  # one order per epoch, memoized
                self._epoch, self._batches = epoch, self._epoch_batches(epoch)
            return self._batches[position]

    def __call__(self, step: int, part: int = 0, parts: int = 1) -> dict[str, np.ndarray]:
        """The batch of `step`; with `parts` > 1 only its rows of part `part` (a process's share:
        rows part * B/parts onwards), so that each process reads just the examples it trains on."""
        index = self.indices(step)
        length = int(self.bucket_lengths[self.bucket_of[index[0]]]) if self.bucket_of is not None else None
        rows = len(index) // parts
        index = index[part * rows:(part + 1) * rows]
        batch = {k: v[index] for k, v in self.arrays.items()}
        if length is not None:  # cut token rows to the bucket's length
            batch = {k: v[:, :length] for k, v in batch.items()}
        return batch


def prefetched(make: Callable[[int], Any], first_step: int, last_step: int, threads: int,
               buffer: int) -> Iterator:
    """`make(step)` (a batch) for step = first_step .. last_step - 1, in order, made ahead of use
    by `threads` grain threads (decoding streamed images) holding at most `buffer` batches. Each
    batch is still a function of its step alone, so the bits do not depend on the threads."""
    import grain

    steps = grain.MapDataset.range(first_step, last_step).map(make)
    options = grain.ReadOptions(num_threads=threads, prefetch_buffer_size=max(buffer, threads))
    return iter(steps.to_iter_dataset(options))


def in_processes(make: Callable[[int], Any], first_step: int, last_step: int, processes: int,
                 buffer: int) -> Iterator:
    """`make(step)` (numpy batches) for step = first_step .. last_step - 1, in order, made by
    `processes` grain worker processes (each takes every processes-th step), which decode in
    parallel where threads would share the GIL; `make` is pickled to them. Close the iterator
    (`.close()`) when done: it holds processes and shared memory."""
    import grain
    from absl import flags

    if not flags.FLAGS.is_parsed():  # grain's workers read its absl flags; aelab sets none
        flags.FLAGS.mark_as_parsed()
    # Python's resource tracker (a process started with these options) counts the shared memory
    # blocks this process opened and the workers freed as "leaked" and says so at exit.
    if TRACKER_QUIET not in sys.warnoptions:
        sys.warnoptions.append(TRACKER_QUIET)
    steps = grain.MapDataset.range(first_step, last_step).map(ParentBound(make))
    options = grain.MultiprocessingOptions(num_workers=processes,
                                           per_worker_buffer_size=max(1, buffer // processes))
    return iter(steps.to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0))
                .mp_prefetch(options))


TRACKER_QUIET = "ignore:resource_tracker:UserWarning"


class ParentBound:
    """`make` as grain's worker processes run it: each worker ends itself once the process that
    started it is gone, so that a SIGKILLed trainer leaves no worker (nor, with them gone, the
    resource tracker whose pipe they hold) behind."""

    def __init__(self, make: Callable[[int], Any]):
        self.make, self.parent = make, os.getpid()

    def __call__(self, step: int) -> Any:
        if os.getpid() != self.parent:
            lifetime.end_with(self.parent)
        return self.make(step)


def eval_batches(split: Split | dict[str, np.ndarray], batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    """The whole split (or dict of per-example arrays) in order, in batches of exactly
    `batch_size` with a `mask`."""
    arrays = split if isinstance(split, dict) else split.arrays()
    count = len(next(iter(arrays.values())))
    batch_size = min(batch_size, count)
    for start in range(0, count, batch_size):
        part = {k: v[start:start + batch_size] for k, v in arrays.items()}
        n = len(next(iter(part.values())))
        pad = batch_size - n
        batch = {k: np.pad(v, [(0, pad)] + [(0, 0)] * (v.ndim - 1)) for k, v in part.items()}
        batch["mask"] = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
        yield batch

"""Evaluation: a split's metrics as means over all of its examples, and split-level scores.

`evaluate_split` runs a compiled evaluation step over fixed-shape, masked
batches and lets the task summarize the means; confusion-matrix scores
(`segmentation_scores`) are computed from counts accumulated over the whole
split, never averaged per batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from aelab import data, parallel


def evaluate_split(eval_step, state, split: data.Split, batch_size: int, rng, task,
                   mesh: jax.sharding.Mesh | None = None) -> dict[str, float]:
    """Means over every example of `split` (padding masked out), summarized by the task.

    Batch i draws its randomness from fold_in(rng, i): the same at every evaluation.
    On a mesh, batches are sharded along its data axis.
    """
    totals = None
    for i, batch in enumerate(data.eval_batches(split, batch_size)):
        if mesh is not None:
            batch = parallel.put_batch(batch, mesh)
        sums = eval_step(state, batch, jax.random.fold_in(rng, i))
        totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    totals = jax.device_get(totals)
    count = totals.pop("count")
    return task.summarize({k: np.asarray(v) / count for k, v in totals.items()})


def segmentation_scores(confusion: np.ndarray) -> dict[str, float]:
    """Pixel accuracy, per-class and mean IoU, and mean Dice from a [true, predicted] confusion matrix.

    The matrix is accumulated over the whole split (not averaged per batch). A class
    absent from both truth and prediction has no IoU and is left out of the means.
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(confusion)
    true, predicted = confusion.sum(axis=1), confusion.sum(axis=0)
    present = (true + predicted) > 0
    iou = tp[present] / (true + predicted - tp)[present]
    dice = 2 * tp[present] / (true + predicted)[present]
    scores = {"pixel_accuracy": float(tp.sum() / max(confusion.sum(), 1e-12)),
              "mean_iou": float(iou.mean()) if present.any() else 0.0,
              "dice": float(dice.mean()) if present.any() else 0.0}
    scores.update({f"iou_{k}": float(v) for k, v in zip(np.flatnonzero(present), iou)})
    return scores

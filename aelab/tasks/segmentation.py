"""Semantic segmentation: images to per-pixel classes with a U-Net (or the same network without skips).

Losses (`config.loss`): `cross_entropy` (nats per labelled pixel), `dice` (1 -
mean soft Dice over classes), or their sum. Pixels whose mask equals
`segmentation.ignore_index` count nowhere: not in the losses, not in the
metrics. Metrics come from one confusion matrix accumulated over the whole
split: pixel accuracy, per-class IoU, mean IoU and mean Dice.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from aelab import evaluate, losses, models, plots
from aelab.baselines import majority_baseline
from aelab.data import Dataset, Split, eval_batches
from aelab.data.augment import flip_and_crop
from aelab.data.lazy import row_chunks
from aelab.errors import UsageError, choose
from aelab.tasks.base import Task

SEG_LOSSES = ("cross_entropy", "dice", "cross_entropy+dice")
UNITS = {"loss": "per example: cross-entropy (nats per labelled pixel) and/or 1 - soft Dice",
         "cross_entropy": "nats per labelled pixel", "mean_iou": "fraction", "pixel_accuracy": "fraction"}


class SegmentationTask(Task):
    family = "segmentation"

    def __init__(self, config: ml_collections.ConfigDict, policy=None, runs=None):
        super().__init__(config, policy, runs)
        choose("loss", config.loss, SEG_LOSSES)
        self.num_classes = k = config.model.num_classes
        if k < 2:
            raise UsageError(f"model.num_classes={k} must be >= 2")
        weights = tuple(config.segmentation.class_weights) or (1.0,) * k
        if len(weights) != k or min(weights) <= 0:
            raise UsageError(f"segmentation.class_weights={tuple(config.segmentation.class_weights)} "
                             f"must hold {k} positive weights (one per class), or be empty")
        self.class_weights = np.asarray(weights, np.float32)
        self.ignore_index = config.segmentation.ignore_index
        if config.augment.crop < 0:
            raise UsageError(f"augment.crop={config.augment.crop} must be >= 0 (0 = no crop)")
        if config.data.image_size < 0:
            raise UsageError(f"data.image_size={config.data.image_size} must be >= 0 (0 = keep the size)")

    @classmethod
    def config_defaults(cls) -> dict:
        return {
            "loss": "cross_entropy",  # cross_entropy | dice | cross_entropy+dice
            "data": {
                "image_size": 0,  # resize images (bilinear) and masks (nearest) to this square; 0 = keep
                "mask_key": "",  # TFDS feature of the per-pixel masks ("segmentation_mask")
                "mask_offset": 0,  # subtracted from TFDS mask values (oxford_iiit_pet's start at 1)
                "scenes": {  # scenes:NAME, generated from NAME's digits
                    "canvas": 64,  # canvas side in pixels
                    "min_digits": 1,
                    "max_digits": 3,
                    "num_train": 10000,  # scenes from train digits (validation is carved from them)
                    "num_test": 2000,  # scenes from test digits
                    "ink_threshold": 0.5,  # a digit's pixels at least this bright carry its class
                },
            },
            # A U-Net (aelab/models/unet.py; its keys in config.model.unet), or a plugin's architecture.
            "model": {"arch": "unet", "num_classes": 2},
            "segmentation": {
                "ignore_index": -1,  # mask value of unlabelled pixels (out of loss and metrics)
                "class_weights": (),  # one positive weight per class; () = all 1
            },
            # Training-time augmentation, identical for an image and its mask.
            "augment": {"hflip": False, "vflip": False, "crop": 0},  # crop: crop x crop windows; 0 = whole
        }

    def prepare(self, dataset: Dataset) -> Dataset:
        """Checks that every split has masks of the images' size with ids in [0, num_classes)."""
        for name in ("train", "val", "test"):
            split = dataset.split(name)
            if split is None:  # loaded for another split only
                continue
            if split.masks is None:
                raise UsageError(f"task=segmentation needs masks, but {dataset.name} has none; use "
                                 "segfolder:DIR, scenes:NAME or a TFDS set with data.mask_key")
            if split.masks.shape[1:] != split.images.shape[1:3]:
                raise UsageError(f"{dataset.name}: {name} masks are {split.masks.shape[1:]} but images "
                                 f"{split.images.shape[1:3]}; they must match")
            for start, masks in row_chunks(split.masks):  # streamed masks: read, not held
                ids = np.unique(masks)
                bad = ids[((ids < 0) | (ids >= self.num_classes)) & (ids != self.ignore_index)]
                if len(bad):
                    first = start + int(np.flatnonzero((masks == bad[0]).any(axis=(1, 2)))[0])
                    where = split.files[first] if split.files is not None else f"{name} example {first}"
                    raise UsageError(
                        f"{dataset.name}: {where}: mask holds class id {int(bad[0])}, outside "
                        f"0..{self.num_classes - 1} (model.num_classes={self.num_classes}, "
                        f"segmentation.ignore_index={self.ignore_index})")
        crop = self.config.augment.crop
        if crop > min(dataset.image_shape[:2]):
            raise UsageError(f"augment.crop={crop} is larger than the {dataset.image_shape[0]}x"
                             f"{dataset.image_shape[1]} images")
        return dataset

    def build_model(self, image_shape, rngs: nnx.Rngs) -> nnx.Module:
        return models.build(self.family, self.config.model,
                            models.SegmenterSpec(tuple(image_shape), self.num_classes, rngs))

    def _losses(self, logits, targets, axes):
        valid = (targets != self.ignore_index).astype(jnp.float32)
        targets = jnp.where(targets == self.ignore_index, 0, targets)
        weights = jnp.asarray(self.class_weights)
        ce = losses.pixel_cross_entropy(logits, targets, valid, weights, axes)
        dice = losses.soft_dice_loss(logits, targets, valid, weights, axes)
        loss = {"cross_entropy": ce, "dice": dice, "cross_entropy+dice": ce + dice}[self.config.loss]
        return loss, ce, dice, valid, targets

    def loss_fn(self, model: nnx.Module, batch, rng: jax.Array, step):
        a = self.config.augment
        images, masks = flip_and_crop(batch["image"], batch["segmentation"], rng, a.hflip, a.vflip, a.crop)
        logits = model(images)
        loss, ce, dice, valid, targets = self._losses(logits, masks, axes=(0, 1, 2))
        correct = jnp.sum((jnp.argmax(logits, -1) == targets) * valid) / jnp.maximum(valid.sum(), 1)
        return loss, {"loss": loss, "cross_entropy": ce, "dice_loss": dice, "pixel_accuracy": correct}

    def eval_metrics(self, model: nnx.Module, batch, rng: jax.Array, final: bool):
        logits = model(batch["image"])
        loss, ce, dice, valid, targets = self._losses(logits, batch["segmentation"], axes=(1, 2))
        confusion = losses.confusion_matrices(jnp.argmax(logits, -1), targets, valid, self.num_classes)
        return {"loss": loss, "cross_entropy": ce, "dice_loss": dice, "confusion": confusion}

    def summarize(self, means: dict[str, np.ndarray]) -> dict[str, float]:
        """Split means of the losses; IoU, Dice and accuracy from the split's confusion matrix
        (means of per-example counts are the total counts over N, which the ratios ignore)."""
        means = dict(means)
        scores = evaluate.segmentation_scores(means.pop("confusion"))
        return {**{k: float(v) for k, v in means.items()}, **scores}

    def baselines(self, dataset: Dataset) -> dict[str, dict[str, float]]:
        return {"majority": majority_baseline(dataset.train.masks, dataset.test.masks,
                                                       self.num_classes, self.ignore_index)}

    def predictor(self, model: nnx.Module):
        """`segment(images (N, H, W, C), batch_size) -> class ids (N, H, W)`, compiled once per
        image shape and run in fixed-shape batches."""
        forward = self.policy.jit_model(lambda m, x: jnp.argmax(m(x), -1), model, "evaluate")

        def segment(images: np.ndarray, batch_size: int) -> np.ndarray:
            return np.concatenate([np.asarray(forward(b["image"]))[:int(b["mask"].sum())]
                                   for b in eval_batches(Split(images), batch_size)])

        return segment

    def class_names(self, dataset_name: str) -> list[str]:
        if dataset_name.startswith("scenes:") and self.num_classes == 11:
            return ["background", *map(str, range(10))]
        return [str(k) for k in range(self.num_classes)]

    def figures(self, model: nnx.Module, dataset: Dataset, records, figure_dir: str, baselines=None) -> None:
        test, segment = dataset.test, self.predictor(model)
        confusion = np.zeros((self.num_classes, self.num_classes), np.int64)
        rows = test.figure_rows(8, self.config.seed)
        shown = np.zeros((len(rows), *test.masks.shape[1:]), np.int32)  # predictions of the figure's rows
        for start, images in row_chunks(test.images):  # a streamed test split a chunk at a time
            masks = np.asarray(test.masks[start:start + len(images)])
            predicted = segment(images, self.config.train.eval_batch_size)
            valid = masks != self.ignore_index
            np.add.at(confusion, (masks[valid], predicted[valid]), 1)
            here = (rows >= start) & (rows < start + len(images))
            shown[here] = predicted[rows[here] - start]
        plots.segmentation_rows(np.asarray(test.images[rows]), np.asarray(test.masks[rows]), shown, self.num_classes,
                                os.path.join(figure_dir, "segmentations.png"),
                                title="test images, true and predicted masks", ignore_index=self.ignore_index)
        plots.confusion_matrix(confusion, self.class_names(dataset.name),
                               os.path.join(figure_dir, "confusion_matrix.png"),
                               "test confusion matrix (row-normalized)")
        plots.curves(records, "loss", os.path.join(figure_dir, "loss.png"),
                     f"loss: {self.config.loss}")
        reference = {"majority class": baselines["majority"]["mean_iou"]} if baselines else None
        plots.curves(records, "mean_iou", os.path.join(figure_dir, "mean_iou.png"),
                     "mean IoU (fraction)", reference, log=False)

"""Baselines beside every result: PCA at the same code size (autoencoders), the majority class
(segmentation)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from aelab.data.lazy import row_chunks
from aelab.data.splits import Split
from aelab.evaluate import segmentation_scores
from aelab.losses import bits_per_dim, psnr_of_mse

if TYPE_CHECKING:
    from sklearn.decomposition import PCA


# A streamed split may not fit in memory: PCA fits on a sample of PCA_FIT_MB (decoded) and scores
# it a chunk at a time (row_chunks).
PCA_FIT_MB = 128


def fit_pca(train: Split, n_components: int, seed: int = 0) -> PCA:
    """PCA of the flattened training images (components capped by the data's rank limits); of a
    seeded sample of PCA_FIT_MB of them where the split is streamed and larger than that."""
    from sklearn.decomposition import PCA  # imported on use: scikit-learn is slow to import

    fits = int(PCA_FIT_MB * 2 ** 20 // max(1, train.images.nbytes // len(train)))
    if train.streamed and len(train) > fits:
        sample = np.random.default_rng([seed, 3]).choice(len(train), fits, replace=False)
        train = train.take(np.sort(sample))
    x_train = np.asarray(train.images).reshape(len(train), -1)
    return PCA(n_components=min(n_components, *x_train.shape), random_state=seed).fit(x_train)


def pca_reconstruction(pca: PCA, images: np.ndarray) -> np.ndarray:
    """`images` projected onto the PCA subspace and back, in their own shape."""
    flat = images.reshape(len(images), -1)
    return pca.inverse_transform(pca.transform(flat)).reshape(images.shape)


def pca_errors(pca: PCA, images: np.ndarray) -> np.ndarray:
    """Sum of squared reconstruction errors per image (the `recon_sse` unit); streamed images
    are read and scored a chunk at a time."""
    def errors(x):
        return np.square(pca_reconstruction(pca, x) - x).reshape(len(x), -1).sum(axis=1)

    return np.concatenate([errors(x) for _, x in row_chunks(images)])


def ppca_has_density(pca: PCA) -> bool:
    """Whether probabilistic PCA is a density: its components must leave some of the training
    data's variance outside them (fewer components than the centred data's rank)."""
    return pca.n_components_ < min(pca.n_samples_ - 1, pca.n_features_in_)


def ppca_bits_per_dim(pca: PCA, images: np.ndarray) -> float:
    """Probabilistic PCA's (Tipping & Bishop 1999, sklearn's `score_samples`) mean negative
    log-density of `images` in bits per dimension, plus 8 as for `loss=mse`: a density on [0, 1]
    of 8-bit values, whose bins are 1/256 wide. A likelihood baseline for a VAE of the same code size."""
    if not ppca_has_density(pca):
        raise ValueError(f"probabilistic PCA with {pca.n_components_} components of {pca.n_samples_} "
                         f"training examples leaves no variance outside them: no density")

    nats = np.concatenate([-pca.score_samples(x.reshape(len(x), -1)) for _, x in row_chunks(images)])
    return float(bits_per_dim(float(nats.mean()), images[0].size, continuous=True))


def pca_baseline(pca: PCA, test: Split) -> dict[str, float]:
    """PCA's `recon_sse` (per example), `mse` (per element) and `psnr` (dB, per example) on
    `test`, in the contract's units."""
    squared = pca_errors(pca, test.images)
    mse = squared / test.images[0].size
    return {
        "recon_sse": float(squared.mean()),
        "mse": float(mse.mean()),
        "psnr": float(np.mean(psnr_of_mse(mse))),
        "n_components": int(pca.n_components_),
    }


def majority_baseline(train_masks: np.ndarray, test_masks: np.ndarray, num_classes: int,
                      ignore_index: int) -> dict[str, float]:
    """Scores of predicting the most frequent training class at every pixel of `test` (masks
    counted a chunk at a time: a streamed split's are read, not held)."""
    def counts(masks):
        return sum(np.bincount(m[m != ignore_index].ravel(), minlength=num_classes)[:num_classes]
                   for _, m in row_chunks(masks))

    majority = int(counts(train_masks).argmax())
    true = counts(test_masks)
    confusion = np.zeros((num_classes, num_classes))
    confusion[:, majority] = true
    return {"class": majority, **segmentation_scores(confusion)}

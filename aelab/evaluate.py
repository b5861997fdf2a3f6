"""Baselines beside every result: PCA at the same latent size on the same split."""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA

from aelab.data.splits import Split


def pca_reconstruction(train: Split, test: Split, n_components: int, seed: int = 0) -> np.ndarray:
    """Test images reconstructed by PCA fit on the training images, in the test images' shape."""
    x_train = train.images.reshape(len(train), -1)
    x_test = test.images.reshape(len(test), -1)
    n_components = min(n_components, *x_train.shape)
    pca = PCA(n_components=n_components, random_state=seed).fit(x_train)
    return pca.inverse_transform(pca.transform(x_test)).reshape(test.images.shape)


def pca_baseline(train: Split, test: Split, n_components: int, seed: int = 0) -> dict[str, float]:
    """PCA's `recon_sse` (per example) and `mse` (per element) on `test`, in the contract's units."""
    reconstruction = pca_reconstruction(train, test, n_components, seed)
    squared = np.square(reconstruction - test.images).reshape(len(test), -1).sum(axis=1)
    return {
        "recon_sse": float(squared.mean()),
        "mse": float(squared.mean() / test.images[0].size),
        "n_components": int(min(n_components, len(train), test.images[0].size)),
    }

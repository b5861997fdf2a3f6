"""Codes for downstream tools: `aelab embed` (npz + latent maps) and `aelab probe` (representation quality)."""

from __future__ import annotations

import io
import os

import jax.numpy as jnp
import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.manifold import TSNE
from sklearn.neighbors import KNeighborsClassifier

from aelab import baselines, plots
from aelab.errors import UsageError
from aelab.restore import load
from aelab.uses import encode, uses_dir
from aelab.workdir import atomic_write, write_json

MAP_POINTS = 3000  # t-SNE and scatter plots use at most this many codes


def embed(workdir: str, split_name: str, out: str, out_dir: str | None = None) -> list[str]:
    """Writes the codes and labels of a split to `out` (.npz) and latent maps to DIR/uses/."""
    run = load(workdir)
    model, step = run.model, run.step
    split = run.split(split_name)
    codes = encode(model, split, run.policy)
    arrays = {"codes": codes, "step": np.array(step), "split": np.array(split_name)}
    if split.labels is not None:
        arrays["labels"] = split.labels
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write(out, buffer.getvalue())
    return [out, *latent_maps(model, codes, split.labels, uses_dir(workdir, out_dir), run.config.seed,
                              run.policy)]


def latent_maps(model, codes: np.ndarray, labels, directory: str, seed: int, policy) -> list[str]:
    """Scatters of the codes coloured by label: the codes themselves for a 1-D or 2-D latent
    (2-D: plus the decoded manifold grid), else their PCA and t-SNE projections."""
    rng = np.random.default_rng(seed)
    index = rng.permutation(len(codes))[:MAP_POINTS]
    points, colours = codes[index], None if labels is None else labels[index]
    paths = []
    if codes.shape[1] == 1:  # a 1-D code: its value across, random jitter up and down
        paths.append(os.path.join(directory, "latent_1d.png"))
        jitter = rng.uniform(-1, 1, len(points))
        plots.scatter(np.column_stack([points[:, 0], jitter]), colours, paths[-1],
                      "codes (1-D latent; vertical jitter)")
        return paths
    if codes.shape[1] == 2:
        paths.append(os.path.join(directory, "latent_2d.png"))
        plots.scatter(points, colours, paths[-1], "codes (2-D latent)")
        paths.append(os.path.join(directory, "manifold.png"))
        decode = policy.jit_model(lambda m, z: m.decode(z), model)
        plots.manifold(lambda z: np.asarray(decode(jnp.asarray(z))), codes, paths[-1])
        return paths
    paths.append(os.path.join(directory, "latent_pca.png"))
    plots.scatter(PCA(2, random_state=seed).fit_transform(points), colours, paths[-1],
                  f"codes ({codes.shape[1]}-D) projected by PCA")
    if len(points) < 4:  # t-SNE needs a neighbourhood (its perplexity below the point count)
        return paths
    paths.append(os.path.join(directory, "latent_tsne.png"))
    tsne = TSNE(2, random_state=seed, init="pca", perplexity=min(30.0, len(points) - 1.0))
    plots.scatter(tsne.fit_transform(points), colours, paths[-1], f"codes ({codes.shape[1]}-D) embedded by t-SNE")
    return paths


def probe_scores(train_x, train_y, test_x, test_y) -> dict[str, float]:
    """Linear-probe (logistic regression) and 5-NN accuracy of features."""
    linear = LogisticRegression(max_iter=2000).fit(train_x, train_y)
    knn = KNeighborsClassifier(5).fit(train_x, train_y)
    return {"linear_probe_accuracy": float(linear.score(test_x, test_y)),
            "knn_accuracy": float(knn.score(test_x, test_y))}


def probe(workdir: str, max_train: int = 10000, out_dir: str | None = None) -> str:
    """Representation quality of the codes beside PCA codes of the same size and raw pixels.

    Probes fit on (at most `max_train` of) the training split, scored on the test split;
    features are standardized with training statistics. Writes DIR/uses/representation.json.
    """
    run = load(workdir)
    model, step = run.model, run.step
    train, test = run.dataset.train, run.dataset.test
    if train.labels is None:
        raise UsageError(f"{workdir}: data set {run.dataset.name} has no labels to probe")
    index = np.random.default_rng(run.config.seed).permutation(len(train))[:max_train]
    train, test = train.take(np.sort(index)).in_memory(), test.in_memory()  # only these rows are read
    latent = run.task.code_size
    raw_train, raw_test = train.images.reshape(len(train), -1), test.images.reshape(len(test), -1)
    pca = baselines.fit_pca(train, latent, run.config.seed)
    features = {
        "codes": (encode(model, train, run.policy), encode(model, test, run.policy)),
        f"pca_{latent}": (pca.transform(raw_train), pca.transform(raw_test)),
        "pixels": (raw_train, raw_test),
    }
    results = {"step": step, "train_examples": len(train), "test_examples": len(test)}
    for name, (x_train, x_test) in features.items():
        mean, std = x_train.mean(0), x_train.std(0) + 1e-8
        results[name] = probe_scores((x_train - mean) / std, train.labels,
                                     (x_test - mean) / std, test.labels)
    path = os.path.join(uses_dir(workdir, out_dir), "representation.json")
    write_json(path, results)
    return path


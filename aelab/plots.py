"""Figures as PNG files (matplotlib, headless). Each is written atomically."""

from __future__ import annotations

import io
from typing import Iterable, Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from aelab import compiler
from aelab.workdir import atomic_write


class _Pyplot:
    """matplotlib.pyplot (headless), imported when the first figure is drawn: importing it
    would slow every start of the `aelab` command."""

    def __getattr__(self, name: str):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot

        return getattr(matplotlib.pyplot, name)


plt = _Pyplot()


def save(fig, path: str) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    atomic_write(path, buffer.getvalue())


def image_rows(rows: Sequence[np.ndarray], row_titles: Sequence[str], path: str,
               title: str = "", panel: float = 0.9) -> None:
    """One row of images per array in `rows` (each (N, H, W, C) in [0, 1]), same N;
    each image `panel` inches wide. A row is one strip (one Axes, not N: matplotlib
    renders each Axes at a cost, 3 x 16 of them took ~1 s to save)."""
    n = len(rows[0])
    fig, axes = plt.subplots(len(rows), 1, figsize=(n * panel, len(rows) * (panel + 0.1)), squeeze=False)
    for ax, images, name in zip(axes[:, 0], rows, row_titles):
        ax.imshow(_strip(images), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(name, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title)
    save(fig, path)


def _strip(images: np.ndarray, gap: int = 1) -> np.ndarray:
    """Images (N, H, W, C) side by side, `gap` white pixels apart: (H, N (W + gap) - gap[, C])."""
    images = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
    n, height, width, channels = images.shape
    strip = np.ones((height, n * (width + gap) - gap, channels), np.float32)
    for i, image in enumerate(images):
        strip[:, i * (width + gap):i * (width + gap) + width] = image
    return strip[..., 0] if channels == 1 else strip


def curves(records: Iterable[Mapping], metric: str, path: str, ylabel: str,
           reference: Mapping[str, float] | None = None, log: bool = True) -> None:
    """`metric` against step, one line per split, with optional horizontal reference lines."""
    by_split: dict[str, list[tuple[int, float]]] = {}
    for record in records:
        if record.get(metric) is not None:
            by_split.setdefault(record["split"], []).append((record["step"], record[metric]))
    fig, ax = plt.subplots(figsize=(6, 4))
    for split, points in sorted(by_split.items()):
        steps, values = zip(*points)
        ax.plot(steps, values, marker="o" if len(points) < 20 else None, label=split)
    for name, value in (reference or {}).items():
        ax.axhline(value, linestyle="--", color="gray")
        ax.annotate(name, (0, value), textcoords="offset points", xytext=(4, 4), color="gray")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend()
    save(fig, path)


def interpolation(model, images: np.ndarray, path: str, policy: compiler.CompilePolicy | None = None,
                  pairs: int = 4, steps: int = 10) -> None:
    """Rows of `steps` images decoded along the line between the codes of two test images,
    computed as one program compiled by `policy` (the run's; default: this backend's)."""
    count = min(pairs, len(images) // 2)
    policy = policy or compiler.CompilePolicy.for_config()
    lines = policy.jit_model(lambda m, a, b: jnp.stack([m.interpolate(a[i], b[i], steps) for i in range(count)]),
                             model)(jnp.asarray(images[0:2 * count:2]), jnp.asarray(images[1:2 * count:2]))
    image_rows(list(np.asarray(lines)), [f"pair {i}" for i in range(count)], path,
               title="interpolation between the codes of two test images")


def sample_grid(samples: np.ndarray, path: str, title: str = "samples from the prior") -> None:
    """A square-ish grid of generated images."""
    n = len(samples)
    cols = int(np.ceil(np.sqrt(n)))
    rows = [samples[i:i + cols] for i in range(0, n - n % cols or n, cols)]
    fig, axes = plt.subplots(len(rows), cols, figsize=(cols * 0.8, len(rows) * 0.8), squeeze=False)
    for r, row in enumerate(rows):
        for c in range(cols):
            ax = axes[r, c]
            ax.axis("off")
            if c < len(row):
                image = np.clip(row[c], 0.0, 1.0)
                ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray",
                          vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.suptitle(title)
    save(fig, path)


def scatter(points: np.ndarray, labels, path: str, title: str) -> None:
    """2-D points, coloured by integer label when there are labels."""
    fig, ax = plt.subplots(figsize=(6, 5))
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=3, alpha=0.6)
    else:
        sc = ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="tab10", s=3, alpha=0.7)
        fig.colorbar(sc, ax=ax, label="label")
    ax.set_title(title)
    save(fig, path)


def manifold(decode, codes: np.ndarray, path: str, n: int = 15) -> None:
    """Images decoded on an n x n grid spanning the 1st-99th percentiles of 2-D codes."""
    low, high = np.percentile(codes, 1, axis=0), np.percentile(codes, 99, axis=0)
    xs, ys = np.linspace(low[0], high[0], n), np.linspace(high[1], low[1], n)
    grid = np.array([[x, y] for y in ys for x in xs], dtype=np.float32)
    images = decode(grid)
    h, w, c = images.shape[1:]
    canvas = images.reshape(n, n, h, w, c).transpose(0, 2, 1, 3, 4).reshape(n * h, n * w, c)
    canvas = canvas[..., 0] if c == 1 else canvas
    fig, ax = plt.subplots(figsize=(7, 7))
    ax.imshow(np.clip(canvas, 0, 1), cmap="gray", extent=(low[0], high[0], low[1], high[1]), aspect="auto")
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")
    ax.set_title("decoded latent manifold")
    save(fig, path)


def histograms(normal: np.ndarray, anomalous: np.ndarray, threshold: float, path: str,
               xlabel: str) -> None:
    """Score histograms of normal and anomalous test examples with the chosen threshold."""
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.histogram_bin_edges(np.concatenate([normal, anomalous]), bins=60)
    ax.hist(normal, bins=bins, alpha=0.6, density=True, label=f"normal ({len(normal)})")
    ax.hist(anomalous, bins=bins, alpha=0.6, density=True, label=f"anomalous ({len(anomalous)})")
    ax.axvline(threshold, color="black", linestyle="--", label="threshold")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.legend()
    save(fig, path)


def sweep_curve(rows, x_axis: str, group_axes, metric: str, path: str) -> None:
    """`eval_<metric>` against the swept `x_axis`: one line per combination of the other axes,
    seeds folded into mean +- standard deviation, and PCA's value (where reported) dashed."""
    fig, ax = plt.subplots(figsize=(6, 4))
    series: dict[tuple, dict] = {}
    baseline: dict = {}
    for row in rows:
        if row.get(f"eval_{metric}") is None:
            continue
        key = tuple(row[a] for a in group_axes)
        series.setdefault(key, {}).setdefault(row[x_axis], []).append(row[f"eval_{metric}"])
        if row.get(f"pca_{metric}") is not None:
            baseline.setdefault(row[x_axis], []).append(row[f"pca_{metric}"])
    for key, points in sorted(series.items()):
        xs = sorted(points)
        means = [np.mean(points[x]) for x in xs]
        stds = [np.std(points[x]) for x in xs]
        label = ", ".join(f"{a}={v}" for a, v in zip(group_axes, key)) or "aelab"
        ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=label)
    if baseline:
        xs = sorted(baseline)
        ax.plot(xs, [np.mean(baseline[x]) for x in xs], "k--", marker="s", label="PCA")
    numeric = [x for points in series.values() for x in points if isinstance(x, (int, float))]
    if numeric and min(numeric) > 0 and max(numeric) / min(numeric) >= 8:
        ax.set_xscale("log", base=2)
    ax.set_xlabel(x_axis)
    ax.set_ylabel(f"test {metric}")
    ax.grid(True, alpha=0.3)
    ax.legend()
    save(fig, path)


def class_colors(num_classes: int) -> np.ndarray:
    """(K, 3) RGB in [0, 1]: class 0 black, the others from tab10/tab20."""
    cmap = plt.get_cmap("tab10" if num_classes <= 11 else "tab20")
    return np.array([(0.0, 0.0, 0.0)] + [cmap(i % cmap.N)[:3] for i in range(num_classes - 1)])


def segmentation_rows(images: np.ndarray, true: np.ndarray, predicted: np.ndarray,
                      num_classes: int, path: str, title: str = "", ignore_index: int = -1) -> None:
    """Rows image / true mask / predicted mask / overlay of the prediction on the image;
    unlabelled pixels (ignore_index) are grey in the true mask."""
    colors = class_colors(num_classes)
    grey = images.mean(axis=-1, keepdims=True).repeat(3, axis=-1)
    overlay = np.where(predicted[..., None] > 0, 0.5 * grey + 0.5 * colors[predicted], grey)
    true_colors = np.where((true == ignore_index)[..., None], 0.5,
                           colors[np.clip(true, 0, num_classes - 1)])
    image_rows([images, true_colors, colors[predicted], overlay],
               ["image", "true mask", "predicted", "overlay"], path, title,
               panel=0.9 if images.shape[1] <= 64 else 2.5)  # large images get room for detail


def confusion_matrix(confusion: np.ndarray, class_names, path: str, title: str) -> None:
    """Row-normalized confusion matrix (rows: true class, columns: predicted)."""
    confusion = np.asarray(confusion, dtype=np.float64)
    rates = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    k = len(confusion)
    fig, ax = plt.subplots(figsize=(1.0 + 0.5 * k, 0.8 + 0.5 * k))
    im = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(k):
        for j in range(k):
            if rates[i, j] >= 0.005:
                ax.text(j, i, f"{rates[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xticks(range(k), class_names, rotation=90)
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    save(fig, path)


def captioned_images(images: np.ndarray, captions: Sequence[str], correct: Sequence[bool] | None,
                     path: str, title: str = "", columns: int = 4) -> None:
    """A grid of images, each with its (generated) caption wrapped below it; green where it
    matches a reference exactly, red where it does not (`correct` None: black)."""
    import textwrap

    n = len(images)
    rows = -(-n // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 2.6, rows * 3.2), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, (image, caption) in enumerate(zip(images, captions)):
        ax = axes.ravel()[i]
        image = np.clip(image, 0.0, 1.0)
        ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0.0, vmax=1.0)
        color = "black" if correct is None else ("tab:green" if correct[i] else "tab:red")
        ax.set_title("\n".join(textwrap.wrap(caption or "(empty)", 30)), fontsize=8, color=color)
    if title:
        fig.suptitle(title)
    save(fig, path)

"""Images generated from known factors of variation, for disentanglement: a dSprites-like set.

`dsprites` draws a white shape (square, ellipse or heart) on a black 64x64 canvas at every
combination of five factors, as dSprites does (Matthey et al. 2017): 3 shapes x 6 scales x
40 orientations x 32 x positions x 32 y positions = 737,280 images. `dsprites:small` is the
same on a 32x32 canvas with 10 orientations and 16 positions a side (46,080 images): a size
this project's 2-core machine trains on in minutes. Nothing is downloaded or stored: image i
is drawn from its factors when a batch reads it (a LazyImages), so the set streams like any
folder, and the split carries each image's factor indices (`Split.factors`, (N, 5)).
"""

from __future__ import annotations

import numpy as np

from aelab.data.lazy import LazyImages
from aelab.data.splits import Split
from aelab.errors import UsageError

FACTORS = ("shape", "scale", "orientation", "x", "y")
SHAPES = ("square", "ellipse", "heart")
# variant: (canvas, factor counts in FACTORS order)
VARIANTS = {"": (64, (3, 6, 40, 32, 32)), "small": (32, (3, 6, 10, 16, 16))}


def read_dsprites(variant: str = "") -> dict[str, Split | None]:
    """The whole grid as the training split (validation and test are carved, as for any set)."""
    if variant not in VARIANTS:
        raise UsageError(f"unknown dsprites variant {variant!r}; accepted: dsprites, dsprites:small")
    canvas, counts = VARIANTS[variant]
    factors = np.stack(np.unravel_index(np.arange(int(np.prod(counts))), counts), axis=1)
    grid = (np.arange(canvas) + 0.5) / canvas  # pixel centres in [0, 1]
    ys, xs = np.meshgrid(grid, grid, indexing="ij")

    def read(i: int) -> np.ndarray:
        return render(factors[i], counts, xs, ys)

    where = f"dsprites{':' + variant if variant else ''}"
    images = LazyImages(read, (canvas, canvas, 1), len(factors), lambda i: f"{where}[{i}]", dtype=np.float32)
    return {"train": Split(images, labels=factors[:, 0].copy(), factors=factors), "val": None, "test": None}


def render(factor: np.ndarray, counts, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 1): the shape of `factor` (indices into `counts`) on the pixel grid xs, ys.

    Scale runs from 0.5 to 1 of the largest size (a fifth of the canvas, half-width), the
    orientation over a full turn, the centre over [0.2, 0.8] of each axis, as in dSprites."""
    shape, scale, turn, x, y = (int(v) for v in factor)
    size = 0.1 * (0.5 + 0.5 * scale / max(1, counts[1] - 1))
    angle = 2 * np.pi * turn / counts[2]
    cx, cy = (0.2 + 0.6 * v / max(1, n - 1) for v, n in ((x, counts[3]), (y, counts[4])))
    dx, dy = xs - cx, ys - cy
    u = (np.cos(angle) * dx + np.sin(angle) * dy) / size  # the pixel in the shape's own frame
    v = (-np.sin(angle) * dx + np.cos(angle) * dy) / size
    if SHAPES[shape] == "square":
        inside = (np.abs(u) <= 1) & (np.abs(v) <= 1)
    elif SHAPES[shape] == "ellipse":
        inside = np.square(u) + np.square(v / 0.5) <= 1
    else:  # the heart curve (x^2 + y^2 - 1)^3 <= x^2 y^3, point up, scaled to the same box
        hu, hv = 1.2 * u, -1.2 * v + 0.2
        inside = (np.square(hu) + np.square(hv) - 1) ** 3 - np.square(hu) * hv ** 3 <= 0
    return (inside * 255).astype(np.uint8)[..., None]

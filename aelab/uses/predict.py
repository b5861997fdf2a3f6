"""`aelab predict`: masks for new images from a trained segmentation workdir, written as PNGs.

Each input image is read (and resized as in training, when `data.image_size`
is set), segmented, and its mask brought back to the input's own size
(nearest neighbour) and written as `OUT/<name>.png`: class ids as grey levels,
or 0/255 for two classes, the convention `segfolder:` reads back. Every input
is read before anything is written, so a bad file costs no half-written output.
"""

from __future__ import annotations

import io
import os

import numpy as np

from aelab.data.files import IMAGE_EXTENSIONS, read_image
from aelab.data.segmentation import resize_mask, resize_pair
from aelab.data.splits import to_unit_float
from aelab.errors import UsageError
from aelab.restore import load
from aelab.workdir import atomic_write


def input_files(path: str) -> list[str]:
    """`path` itself if it is a file, else the image files directly inside the folder."""
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise UsageError(f"--input={path}: no such file or directory")
    files = [os.path.join(path, f) for f in sorted(os.listdir(path)) if f.lower().endswith(IMAGE_EXTENSIONS)]
    if not files:
        raise UsageError(f"--input={path}: no images ({'/'.join(IMAGE_EXTENSIONS)}) in the folder")
    return files


def mask_png(mask: np.ndarray, num_classes: int) -> bytes:
    from PIL import Image

    pixels = (mask * 255 if num_classes == 2 else mask).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def predict(workdir: str, input_path: str | None, out_dir: str | None) -> list[str]:
    """Writes one mask PNG per input image into `out_dir`; returns their paths."""
    if not input_path or not out_dir:
        raise UsageError("predict needs --input=IMAGE_OR_DIR and --out=DIR")
    files = input_files(input_path)
    run = load(workdir, "segmentation", "predict")
    model, task = run.model, run.task
    if task.num_classes > 256:
        raise UsageError(f"model.num_classes={task.num_classes}: PNG masks hold at most 256 class ids")
    channels, size = run.example_shape[-1], run.config.data.image_size
    images = {path: read_image(path, channels) for path in files}
    names = [os.path.splitext(os.path.basename(p))[0] for p in files]
    if len(set(names)) != len(names):
        raise UsageError(f"--input={input_path}: several images share a name; masks would overwrite each other")
    segment = task.predictor(model)
    written = []
    for path, name in zip(files, names):
        original = images[path]
        resized, _ = resize_pair(original, None, size)
        mask = segment(to_unit_float(resized[None], path), 1)[0]
        if mask.shape != original.shape[:2]:
            mask = resize_mask(mask, original.shape[:2])
        out = os.path.join(out_dir, f"{name}.png")
        atomic_write(out, mask_png(mask, task.num_classes))
        written.append(out)
    return written


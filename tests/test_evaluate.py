"""Predictions, metrics, loss inspection and the predictions CSV (tiny random models, CPU)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from transfer_core.data.types import Dataset, Sample
from transfer_core.evaluate import (Predictions, compute_metrics, evaluate_predictions, load_predictions,
                                    misclassified, predict_dataset, predict_inputs, save_predictions, top_losses)
from transfer_core.models import build_model

CLASSES = ["cat", "dog", "NA"]   # "NA" must survive the CSV round trip as text


# ---------------------------------------------------------------- metrics

def test_metrics_match_hand_computed_values():
    # Class "d" never occurs, class "c" is never predicted, the last sample has no known label.
    classes = ["a", "b", "c", "d"]
    true = [0, 0, 1, 1, 2, -1]
    pred = [0, 1, 1, 1, 0, 2]
    m = compute_metrics(true, pred, classes)
    assert m["num_samples"] == 5 and m["num_unlabeled"] == 1
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["confusion_matrix"] == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    a, b, c, d = (m["per_class"][k] for k in classes)
    assert (a["precision"], a["recall"], a["f1"], a["support"]) == pytest.approx((0.5, 0.5, 0.5, 2))
    assert (b["precision"], b["recall"], b["f1"], b["support"]) == pytest.approx((2 / 3, 1.0, 0.8, 2))
    assert (c["precision"], c["recall"], c["f1"], c["support"]) == (0.0, 0.0, 0.0, 1)
    assert (d["precision"], d["recall"], d["f1"], d["support"]) == (0.0, 0.0, 0.0, 0)
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 0 + 0) / 4)


def test_metrics_without_known_labels():
    m = compute_metrics([-1, -1], [0, 1], ["a", "b"])
    assert m["accuracy"] is None and m["macro_f1"] is None
    assert m["num_samples"] == 0 and m["num_unlabeled"] == 2
    assert m["confusion_matrix"] == [[0, 0], [0, 0]]


def _preds() -> Predictions:
    probs = np.array([[0.7, 0.2, 0.1],    # right, low loss
                      [0.1, 0.8, 0.1],    # wrong (true cat), confident
                      [0.3, 0.3, 0.4],    # right, unsure
                      [0.05, 0.05, 0.9],  # label unknown
                      [0.2, 0.6, 0.2]],   # wrong (true NA), less confident
                     dtype=np.float32)
    return Predictions(ids=[f"row {i}" for i in range(5)], true=np.array([0, 0, 2, -1, 2]), probs=probs,
                       classes=list(CLASSES))


def _dataset_for(preds: Predictions) -> Dataset:
    labels = [CLASSES[t] if t >= 0 else "bird" for t in preds.true]
    return Dataset("text", [Sample(i, f"text of {i}", l) for i, l in zip(preds.ids, labels)])


def test_prediction_properties_and_losses():
    p = _preds()
    assert p.pred.tolist() == [0, 1, 2, 2, 1]
    assert p.confidence == pytest.approx([0.7, 0.8, 0.4, 0.9, 0.6])
    losses = p.losses
    assert losses[[0, 1, 2, 4]] == pytest.approx(-np.log([0.7, 0.1, 0.4, 0.2]), rel=1e-6)
    assert math.isnan(losses[3])
    ev = evaluate_predictions(p)
    assert ev["loss"] == pytest.approx(float(-np.log([0.7, 0.1, 0.4, 0.2]).mean()), rel=1e-6)
    assert ev["accuracy"] == pytest.approx(0.5) and ev["num_unlabeled"] == 1


def test_top_losses_and_misclassified_ordering():
    p = _preds()
    ds = _dataset_for(p)
    top = top_losses(p, ds, k=3)
    assert [r["id"] for r in top] == ["row 1", "row 4", "row 2"]
    assert top[0] == {"id": "row 1", "input": "text of row 1", "true": "cat", "predicted": "dog",
                      "confidence": pytest.approx(0.8), "loss": pytest.approx(-math.log(0.1), rel=1e-6)}
    assert len(top_losses(p, ds, k=20)) == 4          # the unknown-label sample has no loss
    wrong = misclassified(p, ds)
    assert [r["id"] for r in wrong] == ["row 1", "row 4"]
    assert top_losses(p, k=1)[0]["input"] is None      # works without the dataset too
    with pytest.raises(ValueError):
        top_losses(p, ds.subset([0, 1]))


def test_predictions_csv_round_trip(tmp_path):
    p = _preds()
    path = save_predictions(p, tmp_path / "out" / "predictions.csv")
    df = load_predictions(path)
    assert list(df.columns) == ["id", "true", "predicted", "confidence", "loss", "prob_cat", "prob_dog", "prob_NA"]
    assert df["id"].tolist() == p.ids
    assert df["true"].tolist() == ["cat", "cat", "NA", "", "NA"]
    assert df["predicted"].tolist() == ["cat", "dog", "NA", "NA", "dog"]
    np.testing.assert_allclose(df[["prob_cat", "prob_dog", "prob_NA"]].to_numpy(), p.probs, atol=1e-7)
    np.testing.assert_allclose(df["loss"].to_numpy(), p.losses, rtol=1e-6)   # nan stays nan
    np.testing.assert_allclose(df["confidence"].to_numpy(), p.confidence, rtol=1e-6)


# ---------------------------------------------------------------- running models

def _write_images(folder, n=6) -> list[str]:
    rng = np.random.default_rng(1)
    paths = []
    for i in range(n):
        w, h = 20 + 7 * i, 30 - 2 * i
        path = folder / f"img_{i}.png"
        Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def test_predict_dataset_images_matches_predict_inputs(tmp_path):
    torch.manual_seed(0)
    built = build_model("tiny_cnn", CLASSES, pretrained=False, image_size=16)
    paths = _write_images(tmp_path)
    labels = ["cat", "dog", "NA", "cat", "horse", "dog"]    # "horse" is unknown to the model
    ds = Dataset("image", [Sample(f"img_{i}.png", p, l) for i, (p, l) in enumerate(zip(paths, labels))])
    built.net.train()
    preds = predict_dataset(built, ds, batch_size=4)
    assert built.net.training                              # caller's mode is restored
    assert preds.ids == [s.id for s in ds.samples]
    assert preds.true.tolist() == [0, 1, 2, 0, -1, 1]
    assert preds.probs.dtype == np.float32 and preds.probs.shape == (6, 3)
    np.testing.assert_allclose(preds.probs.sum(axis=1), 1.0, atol=1e-6)
    direct = predict_inputs(built, paths)
    np.testing.assert_allclose(direct, preds.probs, atol=1e-6)
    pil = predict_inputs(built, [Image.open(p) for p in paths[:2]])
    np.testing.assert_allclose(pil, preds.probs[:2], atol=1e-6)
    assert predict_dataset(built, Dataset("image", []), batch_size=4).probs.shape == (0, 3)


def test_predict_dataset_text_matches_predict_inputs():
    torch.manual_seed(0)
    built = build_model("tiny_bert", CLASSES, pretrained=False, max_length=8)
    texts = ["a short one", "a much longer text that will certainly be cut at eight tokens", "x", "another"]
    ds = Dataset("text", [Sample(f"row {i}", t, CLASSES[i % 3]) for i, t in enumerate(texts)])
    preds = predict_dataset(built, ds, batch_size=3)
    assert preds.true.tolist() == [0, 1, 2, 0]
    np.testing.assert_allclose(predict_inputs(built, texts, batch_size=2), preds.probs, atol=1e-5)
    metrics = evaluate_predictions(preds)
    assert metrics["num_samples"] == 4 and len(metrics["confusion_matrix"]) == 3


def test_metrics_agree_with_sklearn_including_absent_classes():
    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

    rng = np.random.default_rng(0)
    classes = [f"c{i}" for i in range(6)]
    true = rng.integers(0, 5, 200)          # class c5 never occurs, and c4 is never predicted
    pred = np.where(rng.random(200) < 0.6, true, rng.integers(0, 4, 200))
    m = compute_metrics(true, pred, classes)
    labels = list(range(6))
    p, r, f, s = precision_recall_fscore_support(true, pred, labels=labels, zero_division=0)
    assert m["confusion_matrix"] == confusion_matrix(true, pred, labels=labels).tolist()
    assert m["macro_f1"] == pytest.approx(f1_score(true, pred, labels=labels, average="macro", zero_division=0))
    for i, c in enumerate(classes):
        assert m["per_class"][c] == pytest.approx({"precision": p[i], "recall": r[i], "f1": f[i], "support": s[i]})

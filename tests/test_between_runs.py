"""Transfer between runs and separate measuring files: a run started from an earlier run keeping or replacing its
head (model.new_head), and validation and test files of their own (data.val_path, data.test_path)."""
from __future__ import annotations

import csv
import json
from collections import Counter

import pytest
import torch
from safetensors.torch import load_file
from test_cli import cli
from test_trainer import image_config, text_config

from transfer_core.config import ConfigError
from transfer_core.data import Dataset, Sample, make_splits
from transfer_core.errors import DataError
from transfer_core.events import RunStatus
from transfer_core.run_files import METRICS_FILE, TEST_PREDICTIONS_FILE, WEIGHTS_FILE
from transfer_core.trainer import fit

TINY_RATE = 1e-7   # training that leaves the head where it started, to see where it started


def head_weights(store, run_id: str) -> dict[str, torch.Tensor]:
    weights = load_file(str(store.run_dir(run_id) / WEIGHTS_FILE))
    return {k: v for k, v in weights.items() if k.startswith("head.")}


def test_a_run_from_a_run_keeps_its_trained_head_or_gets_a_new_one(digits_folder, store):
    first = fit(image_config(digits_folder, train__epochs=4, freeze__preset="full"), store=store)
    assert first.status == RunStatus.COMPLETED, first.message
    trained = head_weights(store, first.run_id)
    kept = fit(image_config(digits_folder, model__name=f"run:{first.run_id}", train__epochs=1, optim__lr=TINY_RATE,
                            freeze__preset="feature_extraction"), store=store)
    fresh = fit(image_config(digits_folder, model__name=f"run:{first.run_id}", train__epochs=1, optim__lr=TINY_RATE,
                             freeze__preset="feature_extraction", model__new_head=True), store=store)
    for key, value in head_weights(store, kept.run_id).items():
        torch.testing.assert_close(value, trained[key], atol=1e-4, rtol=0)
    assert any((value - trained[key]).abs().max() > 0.01 for key, value in head_weights(store, fresh.run_id).items())
    # The kept head starts where the first run ended; a new one starts from chance.
    assert kept.metrics["val_accuracy"] == pytest.approx(first.metrics["val_accuracy"], abs=0.05)
    assert fresh.metrics["val_accuracy"] < kept.metrics["val_accuracy"]


def test_a_new_head_is_ignored_for_a_registry_model(digits_folder, store):
    plain = fit(image_config(digits_folder, train__epochs=1), store=store)
    asked = fit(image_config(digits_folder, train__epochs=1, model__new_head=True), store=store)
    assert plain.metrics["val_loss"] == asked.metrics["val_loss"]


def text_ds(counts: dict[str, int], prefix: str) -> Dataset:
    return Dataset(modality="text", samples=[Sample(id=f"{prefix}{label}{j}", input=f"{prefix} {label} {j}", label=label)
                                             for label, n in counts.items() for j in range(n)])


def test_a_test_file_is_the_test_split_and_the_rest_splits_as_before():
    train, test = text_ds({"a": 20, "b": 10}, "t"), text_ds({"a": 4, "b": 3}, "x")
    splits = make_splits(train, test_ds=test, val_fraction=0.2, seed=0)
    without = make_splits(train, val_fraction=0.2, seed=0)
    assert [s.id for s in splits.test.samples] == [s.id for s in test.samples]
    assert [s.id for s in splits.val.samples] == [s.id for s in without.val.samples]
    both = make_splits(train, text_ds({"a": 2, "b": 2}, "v"), test_ds=test, seed=0)
    assert len(both.train) == 30 and Counter(both.val.labels) == {"a": 2, "b": 2} and len(both.test) == 7
    only_a = make_splits(train, test_ds=text_ds({"a": 3}, "x"), seed=0)
    assert "no test examples" in only_a.test.warnings[0]


@pytest.mark.parametrize("test, words", [
    (text_ds({"c": 3}, "x"), "test data has class 'c'"),
    (text_ds({}, "x"), "test data is empty"),
    (Dataset(modality="image", samples=[Sample(id="p", input="p.png", label="a")]), "test data holds image"),
])
def test_a_test_file_that_cannot_measure_the_model_is_refused(test, words):
    with pytest.raises(DataError, match=words):
        make_splits(text_ds({"a": 20, "b": 10}, "t"), test_ds=test)


def test_a_test_file_and_a_test_share_are_not_both_taken(digits_folder):
    with pytest.raises(ConfigError, match="data.test_fraction to 0"):
        image_config(digits_folder, data__test_path=str(digits_folder), data__test_fraction=0.2)


def write_topics(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


def test_a_run_with_validation_and_test_files_reports_each(topics_csv, tmp_path, store):
    rows = list(csv.reader(open(topics_csv, encoding="utf-8")))[1:]
    val = write_topics(tmp_path / "val.csv", rows[::6])
    test = write_topics(tmp_path / "test.csv", rows[1::6])
    result = fit(text_config(topics_csv, data__val_path=str(val), data__test_path=str(test)), store=store)
    assert result.status == RunStatus.COMPLETED, result.message
    metrics = json.loads((store.run_dir(result.run_id) / METRICS_FILE).read_text())
    assert metrics["val"]["num_samples"] == len(rows[::6])
    assert metrics["test"]["num_samples"] == len(rows[1::6])
    assert result.summary()["test_accuracy"] is not None
    assert (store.run_dir(result.run_id) / TEST_PREDICTIONS_FILE).is_file()


def test_a_missing_test_file_is_refused_before_a_run_is_made(topics_csv, tmp_path):
    proc = cli("train", "--data", topics_csv, "--test", tmp_path / "typo.csv", "--model", "tiny_bert",
               runs_dir=tmp_path / "runs", check=False)
    assert proc.returncode == 2 and "data.test_path: nothing at" in proc.stderr
    assert json.loads(cli("runs", "--json", runs_dir=tmp_path / "runs").stdout) == []


def test_the_command_line_takes_a_test_file(topics_csv, tmp_path):
    rows = list(csv.reader(open(topics_csv, encoding="utf-8")))[1:]
    test = write_topics(tmp_path / "test.csv", rows[::5])
    proc = cli("train", "--data", topics_csv, "--test", test, "--model", "tiny_bert", "--epochs", 1, "--max-length", 16,
               "--set", "model.pretrained=false", runs_dir=tmp_path / "runs")
    assert json.loads(proc.stdout.splitlines()[-1])["test_accuracy"] is not None

"""Domain adaptation (loop/adaptation.py, data/unlabelled.py): the DANN and CORAL terms, unlabelled target data,
target accuracy per epoch and at the end, resume, and refusals. Tiny random models on the digits demo sets
(scikit-learn's digits and their shifted copy)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from test_cli import cli
from test_trainer import Recorder, image_config, text_config

from transfer_core.config import ConfigError, RunConfig
from transfer_core.control import RunControl
from transfer_core.data.unlabelled import load_unlabelled
from transfer_core.errors import DataError
from transfer_core.events import RunStatus
from transfer_core.loop.adaptation import GradientReversal, coral_loss, dann_weight
from transfer_core.paths import check_config_paths
from transfer_core.run_files import CHECKPOINT_FILE, METRICS_FILE, WEIGHTS_FILE
from transfer_core.trainer import fit

SOURCE, TARGET = "demo:digits?per_class=8", "demo:digits-shifted?per_class=8"


def adapt_config(method: str, **sets) -> RunConfig:
    cfg = image_config(SOURCE, freeze__preset="full", adapt__target=TARGET, adapt__target_val=TARGET,
                       adapt__method=method, train__epochs=2, **sets)
    return cfg.check()


# ---- the terms -------------------------------------------------------------------------------------
def test_coral_is_the_scaled_distance_between_feature_covariances():
    rng = np.random.default_rng(0)
    source, target = rng.normal(size=(16, 5)), rng.normal(scale=3.0, size=(16, 5))
    expected = ((np.cov(source, rowvar=False) - np.cov(target, rowvar=False)) ** 2).sum() / (4 * 5 * 5)
    assert coral_loss(torch.tensor(source), torch.tensor(target)).item() == pytest.approx(expected)
    assert coral_loss(torch.tensor(source), torch.tensor(source)).item() == pytest.approx(0.0, abs=1e-12)
    assert coral_loss(torch.ones(1, 5), torch.zeros(3, 5)).item() == 0.0    # one sample has no covariance


def test_gradient_reversal_turns_the_gradient_around_and_dann_weight_grows_to_its_top():
    x = torch.ones(3, requires_grad=True)
    GradientReversal.apply(x, 0.5).sum().backward()
    assert torch.equal(x.grad, torch.full((3,), -0.5))
    weights = [dann_weight(p / 10, 2.0) for p in range(11)]
    assert weights[0] == 0.0 and weights == sorted(weights) and weights[-1] == pytest.approx(2.0, abs=1e-3)


# ---- runs ------------------------------------------------------------------------------------------
def test_dann_run_reports_target_accuracy_every_epoch_and_trains_its_domain_classifier(store):
    rec = Recorder()
    result = fit(adapt_config("dann"), store=store, observers=[rec])
    assert result.status == RunStatus.COMPLETED, result.message
    epochs = [e for e in rec.events if e.kind == "EpochEnded"]
    assert len(epochs) == 2 and all(0.0 <= e.target_accuracy <= 1.0 for e in epochs)
    assert any("domain adaptation (dann)" in e.message for e in rec.events if e.kind == "Notice")
    assert 0.0 <= result.metrics["target_accuracy"] <= 1.0 and "target_accuracy" in result.summary()
    saved = json.loads((store.run_dir(result.run_id) / METRICS_FILE).read_text())
    assert saved["summary"]["target_accuracy"] == result.metrics["target_accuracy"]
    assert store.metrics(result.run_id, scope="epoch")["target_accuracy"].notna().all()
    state = torch.load(store.run_dir(result.run_id) / CHECKPOINT_FILE, weights_only=True)["components"]
    assert "DomainAdaptation" in state and state["DomainAdaptation"]["optimizer"]["state"]   # it stepped


def test_coral_changes_what_the_model_learns(store):
    # Weight 0 still trains on mixed batches (BatchNorm normalises both domains); the term changes the weights.
    zero = fit(adapt_config("coral", adapt__weight=0.0), store=store)
    coral = fit(adapt_config("coral", adapt__weight=50.0), store=store)
    weights = [load_file(str(store.run_dir(r.run_id) / WEIGHTS_FILE)) for r in (zero, coral)]
    assert any(not torch.allclose(weights[0][k], weights[1][k], atol=1e-4) for k in weights[0])


def test_the_target_samples_share_the_batch_and_the_exact_batchnorm_statistics(store):
    # Plain training and weight-0 adaptation differ only in the target rows of each batch: the BatchNorm
    # statistics the saved model keeps must then differ, and the layers' own weights too (normalised otherwise).
    plain = fit(image_config(SOURCE, freeze__preset="full", train__epochs=2, train__cache_features=False), store=store)
    zero = fit(adapt_config("coral", adapt__weight=0.0), store=store)
    a, b = (load_file(str(store.run_dir(r.run_id) / WEIGHTS_FILE)) for r in (plain, zero))
    running = [k for k in a if k.endswith("running_mean")]
    assert running and all(not torch.allclose(a[k], b[k]) for k in running)


def test_source_only_runs_report_target_accuracy_too(store):
    cfg = image_config(SOURCE, adapt__target_val=TARGET, train__epochs=1)
    result = fit(cfg, store=store)
    assert result.status == RunStatus.COMPLETED and 0.0 <= result.metrics["target_accuracy"] <= 1.0


def test_a_dann_run_stopped_mid_epoch_resumes_like_an_uninterrupted_one(store):
    baseline = fit(adapt_config("dann"), store=store)
    control = RunControl()
    stopper = Recorder(lambda e: e.kind == "BatchEnded" and e.step == 3 and control.request_stop())
    stopped = fit(adapt_config("dann"), store=store, control=control, observers=[stopper])
    assert stopped.status == RunStatus.STOPPED
    resumed = fit(None, store=store, run_id=stopped.run_id, resume=True)
    assert resumed.status == RunStatus.COMPLETED, resumed.message
    assert resumed.metrics["val_loss"] == pytest.approx(baseline.metrics["val_loss"], abs=1e-6)
    assert resumed.metrics["target_accuracy"] == baseline.metrics["target_accuracy"]


def test_cli_train_with_a_target_prints_target_accuracy_last(tmp_path):
    proc = cli("train", "--data", SOURCE, "--target", TARGET, "--target-val", TARGET, "--adapt", "coral",
               "--model", "tiny_cnn", "--set", "model.pretrained=false", "--image-size", 16, "--epochs", 1,
               "--freeze", "full", "--quiet", runs_dir=tmp_path)
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["status"] == "completed" and 0.0 <= summary["target_accuracy"] <= 1.0


# ---- refusals --------------------------------------------------------------------------------------
def test_adaptation_without_target_data_or_with_every_layer_frozen_is_refused():
    with pytest.raises(ConfigError, match="needs unlabelled data from the new domain"):
        image_config(SOURCE, freeze__preset="full", adapt__method="dann")
    with pytest.raises(ConfigError, match="feature_extraction freezes"):
        image_config(SOURCE, adapt__target=TARGET, adapt__method="coral")


def test_cli_refuses_adaptation_without_a_target_in_one_line(tmp_path):
    proc = cli("train", "--data", SOURCE, "--adapt", "dann", "--model", "tiny_cnn", "--freeze", "full",
               runs_dir=tmp_path, check=False)
    assert proc.returncode == 2 and "--target PATH" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_target_paths_outside_the_apps_folders_are_refused(tmp_path):
    cfg = RunConfig()
    cfg.data.path = str(tmp_path / "data")
    cfg.adapt.target = "/etc"
    with pytest.raises(DataError, match="adapt.target"):
        check_config_paths(cfg, [tmp_path])


# ---- unlabelled data -------------------------------------------------------------------------------
def test_unlabelled_images_come_from_a_flat_folder_and_unreadable_ones_are_left_out(tmp_path):
    for i in range(3):
        Image.fromarray(np.full((8, 8), 40 * i, dtype=np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    target = load_unlabelled(str(tmp_path), modality="image")
    assert len(target) == 3 and {s.label for s in target.samples} == {""}
    assert any("broken.png" in sample_id for sample_id, _ in target.skipped)


def test_unlabelled_texts_need_only_a_text_column_and_labelled_data_loses_its_labels(tmp_path, topics_csv):
    texts = tmp_path / "new.csv"
    texts.write_text("text\nfirst new text\n\nsecond new text\n", encoding="utf-8")
    assert [s.input for s in load_unlabelled(str(texts), modality="text").samples] == ["first new text", "second new text"]
    labelled = load_unlabelled(str(topics_csv), modality="text")
    assert len(labelled) == 60 and {s.label for s in labelled.samples} == {""}
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError):
        load_unlabelled(str(empty), modality="image")


def test_texts_adapt_too_with_target_batches_padded_to_the_source_batches(topics_csv, tmp_path, store):
    target = tmp_path / "new_domain.csv"
    target.write_text("text\n" + "\n".join(f"a much longer text number {i} " * (1 + i % 4) for i in range(30)),
                      encoding="utf-8")
    cfg = text_config(topics_csv, adapt__target=str(target), adapt__target_val=str(topics_csv), adapt__method="dann")
    result = fit(cfg, store=store)
    assert result.status == RunStatus.COMPLETED, result.message
    assert 0.0 <= result.metrics["target_accuracy"] <= 1.0

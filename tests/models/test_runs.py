"""run:<id>: rebuild a finished run's model with its trained weights and a new head."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from transfer_core.errors import ModelError
from transfer_core.models import build_model, get_spec

from modelchecks import assert_well_formed, forward, image_batch, text_batch


def save_run(runs_dir, run_id: str, built, *, base_name: str, image_size=32, max_length=16):
    """What the trainer leaves in a run directory."""
    folder = runs_dir / run_id
    folder.mkdir(parents=True)
    config = {"model": {"name": base_name, "image_size": image_size, "max_length": max_length, "head_dropout": 0.0}}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "labels.json").write_text(json.dumps(built.classes))
    save_file({k: v.contiguous() for k, v in built.net.state_dict().items()}, str(folder / "weights.safetensors"))
    return folder


def _trained(name: str, classes: list[str]):
    """A model whose weights differ from any fresh build (as if trained)."""
    built = build_model(name, classes, image_size=32, max_length=16)
    with torch.no_grad():
        for p in built.net.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return built


def test_run_round_trip_new_classes(tmp_path):
    trained = _trained("tiny_cnn", ["a", "b"])
    save_run(tmp_path, "run1", trained, base_name="tiny_cnn")
    spec = get_spec("run:run1", runs_dir=tmp_path)
    assert spec.source == "run" and spec.modality == "image" and spec.default_image_size == 32
    built = build_model("run:run1", ["x", "y", "z"], runs_dir=tmp_path)
    assert_well_formed(built, 3)
    assert built.spec.name == "run:run1" and built.classes == ["x", "y", "z"]
    old, new = trained.net.state_dict(), built.net.state_dict()
    assert all(torch.equal(new[k], v) for k, v in old.items() if not k.startswith("head."))
    assert forward(built, image_batch(2, 32)).shape == (2, 3)


def test_run_with_its_own_classes_keeps_the_trained_head(tmp_path):
    trained = _trained("tiny_cnn", ["a", "b"])
    save_run(tmp_path, "run1", trained, base_name="tiny_cnn")
    built = build_model("run:run1", ["a", "b"], runs_dir=tmp_path)
    assert torch.equal(built.net.head.weight, trained.net.head.weight)


def test_text_run_round_trip(tmp_path):
    trained = _trained("tiny_bert", ["neg", "pos"])
    save_run(tmp_path, "t1", trained, base_name="tiny_bert")
    built = build_model("run:t1", ["a", "b", "c"], runs_dir=tmp_path)
    assert built.modality == "text" and built.export_format == "hf"
    assert torch.equal(built.hf_model.bert.encoder.layer[1].output.dense.weight,
                       trained.hf_model.bert.encoder.layer[1].output.dense.weight)
    assert built.hf_model.config.id2label == {0: "a", 1: "b", 2: "c"}
    assert forward(built, text_batch(built)).shape == (2, 3)


def test_run_of_a_run(tmp_path):
    first = _trained("tiny_cnn", ["a", "b"])
    save_run(tmp_path, "r1", first, base_name="tiny_cnn")
    second = build_model("run:r1", ["c", "d", "e"], runs_dir=tmp_path)
    with torch.no_grad():
        second.net.block3[0].weight.mul_(2)       # "trained" again
    save_run(tmp_path, "r2", second, base_name="run:r1")
    third = build_model("run:r2", ["f", "g"], runs_dir=tmp_path)
    assert torch.equal(third.net.block3[0].weight, second.net.block3[0].weight)
    assert torch.equal(third.net.block1[0].weight, first.net.block1[0].weight)
    assert get_spec("run:r2", runs_dir=tmp_path).from_run.base == "run:r1"


def test_run_that_loops_back(tmp_path):
    trained = _trained("tiny_cnn", ["a", "b"])
    save_run(tmp_path, "loop", trained, base_name="run:loop")
    with pytest.raises(ModelError, match="loops"):
        get_spec("run:loop", runs_dir=tmp_path)


def test_missing_runs_and_files(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        build_model("run:nope", ["a", "b"], runs_dir=tmp_path)
    with pytest.raises(ModelError, match="does not name a run"):
        get_spec("run:../x", runs_dir=tmp_path)
    trained = _trained("tiny_cnn", ["a", "b"])
    folder = save_run(tmp_path, "half", trained, base_name="tiny_cnn")
    (folder / "weights.safetensors").unlink()
    with pytest.raises(ModelError, match="weights.safetensors"):
        get_spec("run:half", runs_dir=tmp_path)


def test_weights_that_do_not_fit(tmp_path):
    trained = _trained("tiny_cnn", ["a", "b"])
    folder = save_run(tmp_path, "odd", trained, base_name="tiny_cnn")
    state = dict(trained.net.state_dict())
    state["block1.0.weight"] = torch.zeros(4, 3, 3, 3)
    save_file(state, str(folder / "weights.safetensors"))
    with pytest.raises(ModelError, match="do not fit"):
        build_model("run:odd", ["a", "b"], runs_dir=tmp_path)

"""The layer probe (transfer_core/probe.py): every layer group's pooled output in one pass, a linear probe on
each, the CLI's table and JSON line, and its cache."""
from __future__ import annotations

import json

import pytest
import torch
from test_cli import cli

from transfer_core import probe as probe_module
from transfer_core.config import RunConfig
from transfer_core.models import build_model
from transfer_core.models.base import TransferNet


def _last_json(proc) -> dict:
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", ["tiny_cnn", "efficientnet_lite0", "tiny_bert", "minilm_l6"])
def test_one_pass_gives_each_groups_pooled_output_as_a_head_would_read_it(name):
    built = build_model(name, ["a", "b"], pretrained=not name.startswith("tiny"), image_size=64)
    net = built.net.eval()
    assert net.can_probe(built.groups)
    if built.modality == "image":
        batch = {"pixel_values": torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))}
    else:
        batch = dict(built.preprocess.tokenizer(["a short text", "and a longer second text here"], padding=True,
                                                return_tensors="pt"))
    with torch.no_grad():
        one_pass = net.group_features(**batch)
        reference = TransferNet.group_features(net, **batch)   # a prefix per group, pooled
        features = net.features(**batch)
    assert len(one_pass) == len(built.groups) - 1
    for ours, theirs in zip(one_pass, reference):
        assert torch.allclose(ours, theirs, atol=1e-5)
    assert torch.equal(one_pass[-1], features)   # the last group's output is what the head reads


def test_probe_prints_a_table_and_one_json_line_input_to_output(digits_folder, tmp_path):
    runs = tmp_path / "runs"
    proc = cli("probe", "--data", digits_folder, "--model", "tiny_cnn", "--image-size", 16,
               "--set", "model.pretrained=false", "--quiet", runs_dir=runs)
    result = _last_json(proc)
    assert result["model"] == "tiny_cnn"
    assert [row["layer"] for row in result["layers"]] == ["block1", "block2", "block3"]
    assert [row["features"] for row in result["layers"]] == [8, 16, 32]
    assert all(0.0 <= row["val_accuracy"] <= 1.0 and 0.0 <= row["val_macro_f1"] <= 1.0 for row in result["layers"])
    best = max(result["layers"], key=lambda row: row["val_accuracy"])
    assert result["best_layer"] in [row["layer"] for row in result["layers"]]
    assert next(r for r in result["layers"] if r["layer"] == result["best_layer"])["val_accuracy"] == best["val_accuracy"]
    table = proc.stdout.strip().splitlines()[:-1]
    assert table[0].split() == ["layer", "features", "val_accuracy", "val_macro_f1"]
    assert any("<- best" in line and line.startswith(result["best_layer"]) for line in table)


def test_a_second_probe_reads_the_groups_outputs_from_the_cache(topics_csv, tmp_path, monkeypatch):
    cfg = RunConfig()
    cfg.data.path, cfg.model.name, cfg.model.pretrained, cfg.model.max_length = str(topics_csv), "tiny_bert", False, 16
    first = probe_module.probe(cfg.copy(), cache_root=tmp_path, epochs=50)
    assert [s.layer for s in first.layers] == ["embeddings", "layer0", "layer1"]

    def no_pass(*args, **kwargs):
        raise AssertionError("the network ran again")
    monkeypatch.setattr(probe_module, "group_features", no_pass)
    again = probe_module.probe(cfg.copy(), cache_root=tmp_path, epochs=50)
    assert again.to_dict() == first.to_dict()


def test_a_model_that_cannot_be_read_group_by_group_is_refused_in_one_line(digits_folder, tmp_path):
    proc = cli("probe", "--data", digits_folder, "--model", "vit_b_16", "--image-size", 32,
               "--set", "model.pretrained=false", runs_dir=tmp_path, check=False)
    assert proc.returncode == 2
    assert "cannot be read group by group" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_probe_refuses_zero_epochs(digits_folder, tmp_path):
    proc = cli("probe", "--data", digits_folder, "--model", "tiny_cnn", "--epochs", 0, runs_dir=tmp_path, check=False)
    assert proc.returncode == 2 and "at least 1 epoch" in proc.stderr

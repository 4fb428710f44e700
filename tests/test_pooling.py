"""model.pooling: text models read their tokens as they were trained (mean for sentence encoders)."""
from __future__ import annotations

import json

import pytest
import torch

from transfer_core.config import RunConfig
from transfer_core.errors import ModelError
from transfer_core.export import export_bundle, load_bundle
from transfer_core.feature_cache import cache_key
from transfer_core.models import build_model

TEXTS = ["The striker scored twice in the second half as the home side won the league title on Saturday.",
         "MPs voted on the bill late last night.", "A new phone chip", "ok"]


def test_mean_pooling_bundle_predicts_like_the_engine(tmp_path):
    torch.manual_seed(0)
    built = build_model("minilm_l6", ["sport", "politics", "tech"], max_length=64)
    assert built.preprocess.pooling == "mean"
    result = export_bundle(built, tmp_path / "bundle", verify_inputs=TEXTS)
    assert result.parity["hf"]["passed"] and result.parity["hf"]["max_abs_diff"] < 1e-4
    bundle = tmp_path / "bundle"
    assert json.loads((bundle / "preprocessing.json").read_text())["pooling"] == "mean"
    assert "average of its token states" in (bundle / "README.md").read_text()
    # Without the pooling predict.py applies, the same weights answer differently: the first token is not the mean.
    pre = json.loads((bundle / "preprocessing.json").read_text())
    (bundle / "preprocessing.json").write_text(json.dumps(dict(pre, pooling="cls")))
    first_token = load_bundle(bundle).Model(bundle, backend="hf").predict_proba(TEXTS)
    (bundle / "preprocessing.json").write_text(json.dumps(pre))
    mean = load_bundle(bundle).Model(bundle, backend="hf").predict_proba(TEXTS)
    assert abs(first_token - mean).max() > 1e-3


def test_pooling_is_part_of_the_feature_cache_key():
    cfg = RunConfig()
    keys = {cache_key(cfg, build_model("tiny_bert", ["a", "b"], pretrained=False, pooling=p), "data", "train")
            for p in ("mean", "cls", "pooler")}
    assert len(keys) == 3


def test_runs_saved_before_pooling_existed_keep_the_first_token():
    saved = {"model": {"name": "minilm_l6", "image_size": 224}}
    assert RunConfig.of_saved_run(saved).model.pooling == "cls"
    assert RunConfig.from_dict(saved).model.pooling == "auto"
    assert RunConfig.of_saved_run({"model": {"name": "minilm_l6", "pooling": "auto"}}).model.pooling == "auto"


def test_pooling_choices_are_checked():
    with pytest.raises(ModelError, match="text models only"):
        build_model("tiny_cnn", ["a", "b"], pretrained=False, pooling="mean")
    cfg = RunConfig()
    cfg.model.pooling = "max"
    assert any("model.pooling" in p for p in cfg.validate())

"""The catalogue and name resolution."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from transfer_core.errors import ModelError
from transfer_core.models import default_model, get_spec, list_specs


def test_catalogue_lists_offline_models_first():
    specs = list_specs()
    assert [s.name for s in specs[:2]] == ["efficientnet_lite0", "minilm_l6"]
    assert all(s.offline for s in specs[:2])
    names = {s.name for s in specs}
    assert {"resnet18", "resnet50", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0",
            "convnext_tiny", "vit_b_16", "bert-base-uncased", "tiny_cnn", "tiny_bert"} <= names
    assert all(s.description and s.num_params > 0 for s in specs)


def test_list_specs_filters_by_modality():
    assert {s.modality for s in list_specs("image")} == {"image"}
    assert {s.modality for s in list_specs("text")} == {"text"}
    assert "minilm_l6" in {s.name for s in list_specs("text")}


def test_default_models_are_offline():
    assert default_model("image").name == "efficientnet_lite0"
    assert default_model("text").name == "minilm_l6"
    with pytest.raises(ModelError):
        default_model("audio")


@pytest.mark.parametrize("alias", ["all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "MINILM_L6"])
def test_aliases(alias):
    assert get_spec(alias).name == "minilm_l6"


def test_spec_sources():
    assert get_spec("resnet18").source == "torchvision" and not get_spec("resnet18").offline
    assert get_spec("tiny_cnn").source == "test" and "test" in get_spec("tiny_cnn").description
    assert get_spec("google/vit-base-patch16-224").modality == "image"
    assert get_spec("bert-base-uncased").modality == "text"


def test_unknown_name_lists_valid_names():
    with pytest.raises(ModelError) as err:
        get_spec("resnet9000")
    msg = str(err.value)
    assert "efficientnet_lite0" in msg and "python -m transfer_core models" in msg and "\n" not in msg


def test_empty_name():
    with pytest.raises(ModelError):
        get_spec("  ")


def test_engine_import_does_not_pull_streamlit():
    code = "import transfer_core.models as m, sys; m.list_specs(); assert 'streamlit' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], check=True, timeout=60)

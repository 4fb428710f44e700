"""Bad models and settings through the engine's pre-flight (`check_startable`, used by the CLI and the
app's job manager) and `fit()`: refused with the field named, before any run row or folder exists.
(The same cases through the CLI are in test_bad_inputs_cli.py.)"""
from __future__ import annotations

import pytest

from datafiles import files_under, image_tree
from transfer_core.config import ConfigError, RunConfig
from transfer_core.errors import TransferError
from transfer_core.trainer import check_startable, fit


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No network and empty weight caches. The network's absence is MOCKED (the reachability probe
    always fails), so the test means the same on a machine that has a network."""
    import transfer_core.models.network as network
    monkeypatch.setattr(network, "reachable", lambda *args, **kwargs: False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch"))


def config(data, **settings) -> RunConfig:
    cfg = RunConfig()
    cfg.data.path = str(data)
    cfg.model.name, cfg.model.pretrained, cfg.model.image_size = "tiny_cnn", False, 16
    for key, value in settings.items():
        cfg.set(key.replace("__", "."), value)
    return cfg


CASES = [
    ("unknown_model", "image", {"model__name": "no_such_net"}, "no_such_net"),
    ("online_only_torchvision_model_offline", "image", {"model__name": "resnet50", "model__pretrained": True}, "model.name resnet50"),
    ("online_only_hub_model_offline", "text", {"model__name": "bert-base-uncased"}, "model.name bert-base-uncased"),
    ("wrong_modality_model", "image", {"model__name": "tiny_bert"}, "model.name tiny_bert"),
    ("negative_learning_rate", "image", {"optim__lr": -0.01}, "optim.lr"),
    ("batch_size_0", "image", {"train__batch_size": 0}, "train.batch_size"),
    ("100000_epochs", "image", {"train__epochs": 100_000}, "train.epochs"),
    ("image_size_0", "image", {"model__image_size": 0}, "model.image_size"),
    ("nan_weight_decay", "image", {"optim__weight_decay": "nan"}, "optim.weight_decay is nan"),
    ("infinite_learning_rate", "image", {"optim__lr": "inf"}, "optim.lr is inf"),
]


@pytest.mark.parametrize("name, kind, settings, fragment", CASES, ids=[c[0] for c in CASES])
def test_check_startable_refuses_before_a_run_exists(name, kind, settings, fragment, tmp_path, store, offline):
    if kind == "image":
        data = image_tree(tmp_path / "data" / "pets", {"cat": 3, "dog": 3})
    else:
        data = tmp_path / "data" / "topics.csv"
        data.parent.mkdir(parents=True)
        data.write_text("text,label\n" + "".join(f"{w} {i},{w}\n" for w in ("sport", "tech") for i in range(6)))
    before = files_under(tmp_path / "data")
    with pytest.raises(TransferError) as err:
        check_startable(config(data, **settings), runs_dir=store.root)
    message = str(err.value)
    assert fragment in message and "\n" not in message, message
    assert store.list_runs() == [] and not [p for p in store.root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert files_under(tmp_path / "data") == before


@pytest.mark.parametrize("settings, field", [({"optim__lr": -0.01}, "optim.lr"), ({"train__batch_size": 0}, "train.batch_size"),
                                             ({"train__epochs": 100_000}, "train.epochs"), ({"model__image_size": 0}, "model.image_size")],
                         ids=["negative_learning_rate", "batch_size_0", "100000_epochs", "image_size_0"])
def test_fit_refuses_bad_settings_without_a_run_row(settings, field, tmp_path, store):
    """fit() called directly (tests, benchmarks, the job thread) checks the settings before creating the run."""
    data = image_tree(tmp_path / "data" / "pets", {"cat": 3, "dog": 3})
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        fit(config(data, **settings), store=store)
    assert store.list_runs() == []


def test_offline_model_check_passes_for_the_offline_and_untrained_models(tmp_path, offline):
    """The pre-flight check refuses only what must download: offline packages and random init pass."""
    data = image_tree(tmp_path / "data" / "pets", {"cat": 3, "dog": 3})
    check_startable(config(data, model__name="efficientnet_lite0", model__pretrained=True))
    check_startable(config(data, model__name="resnet50", model__pretrained=False))

"""AppTest: the Model page's model list says which models are ready here and hides test models (issue 12)."""
from __future__ import annotations

from apphelpers import draft, no_exceptions, open_app


def _offline(monkeypatch, tmp_path, up: bool = False) -> None:
    from transfer_core.models import huggingface, network
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))        # nothing downloaded before
    monkeypatch.setattr(network, "reachable", lambda host, *a, **k: up)
    monkeypatch.setattr(huggingface, "reachable", lambda host, *a, **k: up)
    if up:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


def test_offline_model_list_says_what_is_ready_and_hides_test_models(app_env, shapes_folder, monkeypatch, tmp_path):
    _offline(monkeypatch, tmp_path)
    at = open_app("2_model", session={"draft_config": draft(data__path=str(shapes_folder))})
    no_exceptions(at)
    options = at.selectbox(key="cfg.model.name").options
    assert options[0].startswith("efficientnet_lite0 · ready ✓")
    assert not any(o.startswith(("tiny_cnn", "tiny_bert")) for o in options)
    others = [o for o in options if not o.startswith("efficientnet_lite0")]
    assert others and all("cannot be reached now" in o for o in others), others

    # Picking one that cannot download says so before any run is started.
    at.selectbox(key="cfg.model.name").set_value("resnet18").run()
    no_exceptions(at)
    assert any("cannot be reached now" in w.value for w in at.warning)


def test_online_models_say_they_download(app_env, monkeypatch, tmp_path):
    _offline(monkeypatch, tmp_path, up=True)
    at = open_app("2_model", session={"draft_config": draft(model__name="minilm_l6")})
    no_exceptions(at)
    options = at.selectbox(key="cfg.model.name").options
    assert any(o.startswith("resnet18 · downloads its weights on first use") for o in options)
    assert any(o.startswith("bert-base-uncased · downloads its weights on first use") for o in options)
    assert not any(o.startswith(("tiny_cnn", "tiny_bert")) for o in options)


def test_a_draft_naming_a_test_model_still_shows_it(app_env, shapes_folder):
    at = open_app("2_model", session={"draft_config": draft(data__path=str(shapes_folder), model__name="tiny_cnn")})
    no_exceptions(at)
    assert at.selectbox(key="cfg.model.name").value == "tiny_cnn"    # a config from the CLI or a test keeps its model

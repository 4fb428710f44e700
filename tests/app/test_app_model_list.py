"""AppTest: the Model page's model list says which models are ready here and hides test models (issue 12)."""
from __future__ import annotations

from apphelpers import draft, no_exceptions, open_app


def _offline(monkeypatch, tmp_path, up: bool = False) -> list[str]:
    """Nothing downloaded before; the network is up or down (faked: a connect would leave the machine).
    Returns the hosts the app probed: page views must probe none."""
    from transfer_core.models import huggingface, network
    probed: list[str] = []

    def reachable(host, *a, **k):
        probed.append(host)
        return up

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(network, "reachable", reachable)
    monkeypatch.setattr(huggingface, "reachable", reachable)
    if up:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return probed


def test_offline_model_list_says_what_is_ready_and_hides_test_models(app_env, shapes_folder, monkeypatch, tmp_path):
    probed = _offline(monkeypatch, tmp_path)
    at = open_app("2_model", session={"draft_config": draft(data__path=str(shapes_folder))})
    no_exceptions(at)
    options = at.selectbox(key="cfg.model.name").options
    assert options[0].startswith("efficientnet_lite0 · ready ✓")
    assert not any(o.startswith(("tiny_cnn", "tiny_bert")) for o in options)
    others = [o for o in options if not o.startswith("efficientnet_lite0")]
    assert others and all("downloads its weights on first use (needs the network)" in o for o in others), others

    # Picking one that must download says so before any run is started; Start is where the source is checked.
    at.selectbox(key="cfg.model.name").set_value("resnet18").run()
    no_exceptions(at)
    assert any("needs the network" in i.value for i in at.info)
    assert probed == [], "a page view contacted the network"


def test_online_models_say_they_download(app_env, monkeypatch, tmp_path):
    probed = _offline(monkeypatch, tmp_path, up=True)
    at = open_app("2_model", session={"draft_config": draft(model__name="minilm_l6")})
    assert probed == [], "a page view contacted the network"
    no_exceptions(at)
    options = at.selectbox(key="cfg.model.name").options
    assert any(o.startswith("resnet18 · downloads its weights on first use") for o in options)
    assert any(o.startswith("bert-base-uncased · downloads its weights on first use") for o in options)
    assert not any(o.startswith(("tiny_cnn", "tiny_bert")) for o in options)


def test_a_draft_naming_a_test_model_still_shows_it(app_env, shapes_folder):
    at = open_app("2_model", session={"draft_config": draft(data__path=str(shapes_folder), model__name="tiny_cnn")})
    no_exceptions(at)
    assert at.selectbox(key="cfg.model.name").value == "tiny_cnn"    # a config from the CLI or a test keeps its model


def test_start_checks_the_download_source_and_refuses_in_one_line(app_env, shapes_folder, monkeypatch, tmp_path):
    """Pages do not probe the network; pressing Start with a model that must download does, once."""
    from app.resources import get_store
    probed = _offline(monkeypatch, tmp_path)
    at = open_app("3_train", session={"draft_config": draft(data__path=str(shapes_folder), model__name="resnet18")})
    no_exceptions(at)
    assert probed == []
    at.button(key="start").click().run()
    no_exceptions(at)
    assert probed, "Start checked the download source"
    refusals = [e.value for e in at.error if "cannot be reached" in e.value]
    assert len(refusals) == 1 and "\n" not in refusals[0], [e.value for e in at.error]
    assert get_store().list_runs() == [], "nothing was started"

"""Plain unit tests of the app's helpers and settings (no Streamlit session needed)."""
from __future__ import annotations

import shlex
import tomllib

import pandas as pd
import pytest
from apphelpers import ROOT, run_started

from transfer_core.config import RunConfig


def test_streamlit_config_is_locked_down():
    cfg = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    server, client = cfg["server"], cfg["client"]
    assert server["address"] == "127.0.0.1"
    assert server["enableXsrfProtection"] is True and server["enableCORS"] is True
    assert 0 < server["maxUploadSize"] <= 2000
    assert server["fileWatcherType"] == "none"
    assert client["showErrorDetails"] in ("none", "type")
    assert cfg["browser"]["gatherUsageStats"] is False


def test_no_pages_folder_beside_streamlits_main_script():
    # With a pages/ folder beside the main script, Streamlit runs a deep link to one of its scripts directly,
    # bypassing the router (and its access check and error guard). The main script is app/router.py, the
    # pages are in the top-level pages/ (tests/e2e/test_e2e_deep_link.py opens a deep link on a fresh server).
    main = (ROOT / "streamlit_app.py").read_text().split('st.App("', 1)[1].split('"', 1)[0]
    assert main == "app/router.py" and not (ROOT / main).parent.joinpath("pages").exists()
    assert len(list((ROOT / "pages").glob("*.py"))) == 7


@pytest.mark.parametrize("page", sorted(p.name for p in (ROOT / "pages").glob("*.py")))
def test_pages_stay_thin(page):
    lines = (ROOT / "pages" / page).read_text().splitlines()
    assert len(lines) <= 100, f"{page} has {len(lines)} lines; move logic into app/ or transfer_core"


def test_streamlit_is_only_imported_by_the_app():
    for path in (ROOT / "transfer_core").rglob("*.py"):
        assert "import streamlit" not in path.read_text(), path


@pytest.mark.parametrize("modality", ["image", "text"])
def test_demo_configs_are_valid_and_offline(modality):
    from app.demo import demo_config
    from transfer_core.models import get_spec
    cfg = demo_config(modality)
    assert cfg.validate() == []
    assert get_spec(cfg.model.name).offline


def test_cli_command_reproduces_the_config(monkeypatch, tmp_path):
    from app.commands import cli_command
    from transfer_core.cli import build_parser, config_from_args
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRANSFER_CORE_RUNS", str(tmp_path / "runs"))
    cfg = RunConfig()
    for key, value in {"data.path": "demo:bbc-news?per_class=20", "model.name": "minilm_l6", "optim.lr": 3e-4,
                       "freeze.preset": "top_k", "freeze.top_k": 3, "augment.flip": True,
                       "train.early_stopping_patience": 2, "freeze.trainable_groups": ["a", "b"]}.items():
        cfg.set(key, value)
    command = cli_command(cfg, name="my run")
    argv = shlex.split(command)
    assert argv[:3] == ["python", "-m", "transfer_core"]
    args = build_parser().parse_args(argv[3:])
    assert args.name == "my run"
    assert config_from_args(args).to_dict() == cfg.to_dict()


def test_progress_from_the_store_view():
    from types import SimpleNamespace

    from app.progress import progress
    record = SimpleNamespace(status="running")
    events = [run_started(epochs=4, steps_per_epoch=10)]
    steps = pd.DataFrame({"step": range(1, 16), "epoch": [0] * 10 + [1] * 5, "time": [float(i) for i in range(15)],
                          "loss": 1.0, "lr": 0.1, "samples_per_second": 32.0})
    epochs = pd.DataFrame({"epoch": [0], "step": [10]})
    p = progress(record, events, steps, epochs)
    assert (p.epoch, p.step_in_epoch, p.steps_per_epoch) == (2, 5, 10)
    assert p.fraction == pytest.approx(15 / 40)
    assert p.seconds_left == pytest.approx(25.0)       # 25 steps left at one step per second
    assert "Epoch 2/4" in p.text() and "10 s per epoch" in p.text()
    waiting = progress(SimpleNamespace(status="queued"), [], steps.head(0), epochs.head(0), runs_ahead=1)
    assert not waiting.started and "Queued" in waiting.text()


def test_every_setting_has_a_label_and_help():
    from app.forms import help_for, label_for
    from transfer_core.config import iter_fields
    for dotted, f, _ in iter_fields(RunConfig()):
        assert label_for(dotted) and help_for(f).strip(), dotted


def test_charts_build_from_store_frames():
    from app import charts
    epochs = pd.DataFrame({"epoch": [0, 1], "step": [5, 10], "train_loss": [1.0, 0.5], "val_loss": [1.1, 0.7],
                           "train_accuracy": [0.5, 0.8], "val_accuracy": [0.4, 0.7], "lr": [0.1, 0.05]})
    steps = pd.DataFrame({"step": range(1, 11), "epoch": [0] * 5 + [1] * 5, "loss": 1.0, "lr": 0.1})
    fig = charts.training_curves(epochs, steps, steps_per_epoch=5)
    assert {t.name for t in fig.data} >= {"training", "validation", "training loss (per step)", "learning rate"}
    assert charts.confusion_matrix([[3, 1], [0, 4]], ["a", "b"], normalise=True).data[0].z[0][0] == 0.75
    assert charts.top_k([{"label": "a", "probability": 0.9}, {"label": "b", "probability": 0.1}]).data[0].y[-1] == "a"


def test_safe_names_never_leave_the_folder():
    from app.data_ui import class_folder_name, safe_name, zip_entry_name
    assert zip_entry_name("../../x/my cat.jpg", "f") == "my cat.jpg" and zip_entry_name("..\\..", "f") == "f"
    assert safe_name("../../etc/passwd") == "passwd"
    assert safe_name("..") == "file" and safe_name("a b/c d.zip") == "c_d.zip"
    assert "/" not in class_folder_name("T-shirt/top") and class_folder_name("..") == "class"


def test_epoch_estimates_follow_what_is_cached():
    from app.model_ui import estimate

    groups = [{"group": g, "params": 1000} for g in ("stem", "block1", "block2", "head")]
    common = dict(modality="image", batch_size=8, image_size=32, max_length=16, n_train=100, n_val=20, per_sample=0.01)
    head = estimate(groups, {"head"}, cached=True, **common)
    top2 = estimate(groups, {"block2", "head"}, cached=True, **common)
    full = estimate(groups, {"stem", "block1", "block2", "head"}, cached=False, **common)
    # Cached frozen layers: the first epoch pays one forward pass of everything, later epochs only what trains.
    assert head["first_epoch"] == pytest.approx(120 * 0.01)
    assert head["later_epoch"] < top2["later_epoch"] < full["later_epoch"]
    assert top2["first_epoch"] > head["first_epoch"]
    assert full["first_epoch"] == full["later_epoch"]


def test_run_labels_never_change_while_a_run_trains_and_the_state_goes_beside_them():
    from types import SimpleNamespace

    from app.ui import run_label, run_state
    queued = SimpleNamespace(name="first try", id="20261126-0101-abc", status="queued", best_metrics={})
    running = SimpleNamespace(**{**vars(queued), "status": "running", "best_metrics": {"val_accuracy": 0.5}})
    # Streamlit sends a selection back as its label: the label of a run must not change as it trains.
    assert run_label(queued) == run_label(running) == "first try · 20261126-0101-abc"
    assert run_state(queued) == "queued" and run_state(running) == "running · your model's validation accuracy 50.0 %"


def test_hardware_caption():
    from app.results_ui import hardware_caption
    assert hardware_caption({}) == ""
    assert hardware_caption({"device": "cpu", "precision": "fp32", "batch_size": 32}) == "Trained on cpu in fp32, batch size 32."
    gpu = {"device": "cuda (NVIDIA H200)", "precision": "bf16", "batch_size": 256, "peak_gpu_memory_mib": 11336.6,
           "compiled": True}
    assert hardware_caption(gpu) == ("Trained on cuda (NVIDIA H200) in bf16, batch size 256, peak GPU memory 11.1 GiB, "
                                     "compiled with torch.compile.")

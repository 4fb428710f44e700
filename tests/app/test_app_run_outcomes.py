"""AppTest: what the pages say about a run's outcome (issue 12): the numbers of the model you get with
the best epoch beside them, Start held back while the data cannot be read, no Resume for a run that
failed on its data (or whose data changed before a resume), and the warning for a frozen group between trained ones."""
from __future__ import annotations

import time
from pathlib import Path

from apphelpers import draft, no_exceptions, open_app

from transfer_core.config import RunConfig
from transfer_core.events import EpochEnded, RunEnded, RunStarted, RunStatus


def _finished_run(runs_dir: Path) -> str:
    """A completed run whose model is its last epoch's (epoch 3) while epoch 1 had the lowest validation loss."""
    from transfer_core.store import RunStore
    cfg = RunConfig()
    cfg.data.path, cfg.model.name = "demo:bbc-news", "tiny_bert"
    with RunStore(runs_dir) as store:
        run_id = store.create_run(cfg.to_dict(), name="overtrained", modality="text", model="tiny_bert",
                                  dataset="demo:bbc-news")
        now = time.time()
        store.record_event(RunStarted(run_id, now, epochs=3, steps_per_epoch=2, start_epoch=0, num_train=8, num_val=4,
                                      classes=("a", "b"), device="cpu", trainable_params=1, total_params=2))
        for epoch, (loss, acc) in enumerate([(0.41, 0.792), (0.52, 0.771), (0.63, 0.767)]):
            store.record_event(EpochEnded(run_id, now, epoch=epoch, step=2 * epoch + 2, train_loss=0.5, train_accuracy=0.8,
                                          val_loss=loss, val_accuracy=acc, val_macro_f1=acc, lr=0.01, seconds=1.0))
        store.record_event(RunEnded(run_id, now, status=RunStatus.COMPLETED, epochs_done=3, best_epoch=0, metrics={
            "val_accuracy": 0.767, "val_macro_f1": 0.76, "val_loss": 0.63, "epochs": 3, "model_epoch": 2,
            "best_epoch": 0, "best_metric": "val_loss", "best_value": 0.41, "best_val_accuracy": 0.792}, train_seconds=3.0))
    return run_id


def _failed_on_its_data(runs_dir: Path, folder: Path) -> str:
    from transfer_core.store import RunStore
    from transfer_core.trainer import fit
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "photos.zip").write_text("these are my photos")
    cfg = RunConfig()
    cfg.data.path, cfg.model.name, cfg.model.pretrained = str(folder / "photos.zip"), "tiny_cnn", False
    with RunStore(runs_dir) as store:
        result = fit(cfg, store=store, name="not a zip")
    assert result.status == RunStatus.FAILED
    return result.run_id


def test_run_card_and_runs_table_show_the_models_numbers_and_the_best_epoch_beside_them(app_env):
    run_id = _finished_run(app_env / "runs")
    at = open_app("3_train", session={"current_run": run_id})
    no_exceptions(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Validation accuracy (your model)"] == "76.7 %"
    assert not [label for label in metrics if label.startswith(("Final", "Best"))]
    note = "best epoch 1 by validation loss (0.410; validation accuracy 79.2 %); the model is epoch 3's"
    assert any(c.value.startswith(f"B{note[1:]}.") and "turn on early stopping" in c.value for c in at.caption)

    at = open_app("6_runs")
    no_exceptions(at)
    row = at.dataframe[0].value.iloc[0]
    # The table is in percent, and its best-epoch cell is the note's short form.
    assert row["val accuracy"] == 76.7 and row["best epoch"] == "epoch 1: 79.2 %"
    assert any(c.value == f"completed · your model's validation accuracy 76.7 % · {note}" for c in at.caption)


def test_start_is_disabled_until_the_data_is_readable(app_env, tmp_path):
    bad = tmp_path / "upload" / "photos.zip"
    bad.parent.mkdir()
    bad.write_text("these are my photos")
    at = open_app("3_train", session={"draft_config": draft(data__path=str(bad), model__name="tiny_cnn")})
    no_exceptions(at)
    assert at.button(key="start").disabled
    reason = [e.value for e in at.error if e.value.startswith("Start needs data that can be read:")]
    assert len(reason) == 1 and "photos.zip is not a zip file" in reason[0] and ".." not in reason[0]


def test_a_run_failed_on_its_data_says_why_once_and_offers_no_resume(app_env, tmp_path):
    run_id = _failed_on_its_data(app_env / "runs", tmp_path / "upload")
    at = open_app("3_train", session={"current_run": run_id})
    no_exceptions(at)
    failed = [e.value for e in at.error if e.value.startswith("The run failed:")]
    assert len(failed) == 1 and "photos.zip is not a zip file" in failed[0]
    assert failed[0].endswith("try again.") and ".." not in failed[0]

    at = open_app("6_runs")
    at.selectbox(key="manage_run").set_value(run_id).run()
    no_exceptions(at)
    assert not [b for b in at.button if b.key == "run_resume_saved"]
    assert any(c.value.startswith("No resume: its data or settings caused the failure") for c in at.caption)
    assert not [e.value for e in at.error if ".." in e.value]


def test_a_run_whose_data_changed_offers_no_resume(app_env, shapes_folder, tmp_path):
    import shutil

    from transfer_core.store import RunStore
    from transfer_core.trainer import fit
    data = tmp_path / "shapes"
    shutil.copytree(shapes_folder, data)
    cfg = RunConfig()
    cfg.data.path, cfg.model.name, cfg.model.pretrained, cfg.model.image_size = str(data), "tiny_cnn", False, 16
    cfg.train.epochs, cfg.train.device = 1, "cpu"
    with RunStore(app_env / "runs") as store:
        run_id = fit(cfg, store=store, name="shapes").run_id
        next((data / "circle").iterdir()).unlink()              # the folder changes before the run is extended
        assert fit(None, store=store, run_id=run_id, resume=True, extra_epochs=1).status == RunStatus.FAILED

    at = open_app("6_runs")
    at.selectbox(key="manage_run").set_value(run_id).run()
    no_exceptions(at)
    assert any("the data changed since this run started" in e.value for e in at.error)
    assert not [b for b in at.button if b.key == "run_resume_saved"]
    assert any(c.value.startswith("No resume: its data or settings caused the failure") for c in at.caption)


def test_model_page_warns_about_a_frozen_group_between_trained_groups(app_env, shapes_folder):
    settings = dict(data__path=str(shapes_folder), model__name="tiny_cnn", model__image_size=32)
    at = open_app("2_model", session={"draft_config": draft(**settings, freeze__preset="top_k", freeze__top_k=2)})
    no_exceptions(at)
    assert not [w for w in at.warning if "between trained groups" in w.value]
    at.toggle(key="layer.block1").set_value(True).run()      # block1 and block3 train, block2 stays frozen
    no_exceptions(at)
    warnings = [w.value for w in at.warning if "between trained groups" in w.value]
    assert warnings == ["Frozen between trained groups: block2. That is unusual: training block1 changes the features "
                        "block2 was pretrained on, and frozen it cannot adapt (gradients still pass through, so freezing "
                        "it saves little time); train block2 too, or freeze block1."]

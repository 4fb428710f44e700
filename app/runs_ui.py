"""Runs page helpers: the table of all runs and the comparison of several."""
from __future__ import annotations

import math
import time

import pandas as pd
import streamlit as st

from transfer_core.config import RunConfig
from transfer_core.csvsafe import csv_bytes
from transfer_core.events import RunStatus
from transfer_core.summary import best_note

from .demo import describe_path
from .nav import page_file
from .state import replace_draft
from .ui import fmt_duration, fmt_pct

COMPARE_METRICS = {"val_accuracy": "Validation accuracy", "val_loss": "Validation loss",
                   "train_loss": "Training loss", "train_accuracy": "Training accuracy",
                   "val_macro_f1": "Validation macro F1", "lr": "Learning rate"}

# Column widths in pixels. Together they fit the main area of a 1400-pixel-wide window beside the
# sidebar (about 940 px), so no column hides behind a horizontal scroll bar; long names end in
# "..." and show whole on hover. The run id is in the run pickers below the table.
RUNS_TABLE_WIDTHS = {"status": 80, "name": 150, "model": 115, "data": 130, "val accuracy": 110,
                     "best epoch": 105, "epochs": 55, "training time": 90, "started": 105}
COMPARE_TABLE_WIDTHS = {"name": 130, "status": 75, "model": 100, "layers": 90, "learning rate": 85, "epochs": 50,
                        "batch size": 65, "val accuracy": 100, "val macro F1": 85, "val loss": 60, "best epoch": 100}
MAIN_AREA_WIDTH = 940


def _number(x) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not math.isnan(x) else None


def training_time(r) -> str:
    """The trainer's own count of training seconds (the wall clock since creation would include time
    queued and time between a finish and an extension)."""
    if r.is_active:
        return "training..."
    return fmt_duration(_number(r.best_metrics.get("train_seconds")))


# The accuracy, F1 and loss columns are of the model each run gives you; "best epoch" names another
# epoch only where that one scored better on the metric the run watches (transfer_core/summary.py).
def runs_table(runs: list) -> pd.DataFrame:
    return pd.DataFrame([{
        "status": r.status, "name": r.name, "model": r.model, "data": describe_path(r.dataset),
        # in percent: shown with the same digits as the comparison table below
        "val accuracy": (100 * acc if (acc := _number(r.best_metrics.get("val_accuracy"))) is not None else None),
        "best epoch": best_epoch_cell(r.best_metrics),
        "epochs": r.epochs_done, "training time": training_time(r),
        "started": pd.Timestamp(r.created, unit="s", tz="UTC").tz_convert(None)} for r in runs],
        columns=list(RUNS_TABLE_WIDTHS))


def best_epoch_cell(summary: dict) -> str:
    """Short form of summary.best_note for a table cell: the better epoch and its validation accuracy,
    '-' where the model is the best epoch's."""
    if not best_note(summary or {}):
        return "-"
    acc = _number(summary.get("best_val_accuracy"))
    return f"epoch {summary['best_epoch'] + 1}" + (f": {fmt_pct(acc)}" if acc is not None else "")


def table_buttons(runs: list) -> None:
    """Below the runs table: refresh it, and download it as CSV (the table's own export is off, as it would
    write a run name like "=HYPERLINK(...)" as a formula; csv_bytes neutralises such cells)."""
    left, right = st.columns([1, 4])
    if left.button("Refresh", icon=":material/refresh:", key="runs_refresh"):
        st.rerun()
    right.download_button("Download the list (CSV)", csv_bytes(runs_table(runs)), file_name="runs.csv",
                          mime="text/csv", icon=":material/download:", key="download_runs")


def runs_table_config() -> dict:
    config = {name: st.column_config.Column(width=width) for name, width in RUNS_TABLE_WIDTHS.items()}
    config["val accuracy"] = st.column_config.ProgressColumn(
        format="%.1f %%", min_value=0, max_value=100, width=RUNS_TABLE_WIDTHS["val accuracy"],
        help="Of the model the run gives you (while it trains: the latest epoch).")
    config["best epoch"] = st.column_config.Column(
        width=RUNS_TABLE_WIDTHS["best epoch"],
        help="An epoch that scored better on the metric the run watches than the model it gives you, if any.")
    config["started"] = st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm", width=RUNS_TABLE_WIDTHS["started"])
    return config


def comparison_table(runs: list) -> pd.DataFrame:
    """Settings and results side by side, as text: percentages as in the table above, "-" where a run
    has no value (a failed run), never "None"."""
    rows = []
    for r in runs:
        cfg, best = r.config or {}, r.best_metrics or {}
        loss = _number(best.get("val_loss"))
        rows.append({"name": r.name, "status": r.status, "model": r.model,
                     "layers": (cfg.get("freeze", {}).get("preset") or "-").replace("_", " "),
                     "learning rate": f"{lr:g}" if (lr := _number(cfg.get("optim", {}).get("lr"))) is not None else "-",
                     "epochs": str(r.epochs_done), "batch size": batch_size_cell(r),
                     "val accuracy": fmt_pct(_number(best.get("val_accuracy"))),
                     "val macro F1": fmt_pct(_number(best.get("val_macro_f1"))),
                     "val loss": f"{loss:.3f}" if loss is not None else "-",
                     "best epoch": best_epoch_cell(best)})
    return pd.DataFrame(rows, columns=list(COMPARE_TABLE_WIDTHS))


def batch_size_cell(record) -> str:
    """The batch size asked for, and the one the run trained with when running out of memory lowered it."""
    asked = (record.config or {}).get("train", {}).get("batch_size")
    if record.batch_size and asked and record.batch_size != asked:
        return f"{record.batch_size} (asked {asked})"
    return str(asked or "-")


def comparison_table_config() -> dict:
    return {name: st.column_config.Column(width=width) for name, width in COMPARE_TABLE_WIDTHS.items()}


def default_comparison(runs: list, anchor_id: str | None = None, limit: int = 3) -> list[str]:
    """The runs compared by default: the followed run (else the newest) and the newest others on the
    same data. Accuracies on different data sets, or of image against text models, are not comparable."""
    if not runs:
        return []
    anchor = next((r for r in runs if r.id == anchor_id), runs[0])
    same = [r.id for r in runs if r.id != anchor.id and r.dataset == anchor.dataset
            and (r.modality or anchor.modality) == (anchor.modality or r.modality)]
    return [anchor.id, *same][:limit]


def reuse_settings(record) -> None:
    """The run's settings as the draft, then the Train page (where Start trains them again)."""
    replace_draft(RunConfig.of_saved_run(record.config))
    st.switch_page(page_file("3_train"))


def settle_dead_runs(store, jobs) -> list[str]:
    """Mark runs whose process died (e.g. a killed CLI run) as interrupted so they can be resumed.
    Runs this app just created count as alive even before their job is registered."""
    recent = [r.id for r in store.list_runs(status=RunStatus.ACTIVE) if time.time() - r.created < 15]
    return store.reconcile_interrupted(jobs.active_runs() + recent)


def offer_rebuild(exc) -> None:
    """The run database is damaged: say so in one line and rebuild the list from the run folders on request
    (rebuild_run_list keeps the damaged file aside)."""
    from transfer_core.store import rebuild_run_list

    from .resources import runs_dir
    from .ui import sentence

    st.error(sentence(str(exc)), icon=":material/database:")
    if st.button("Rebuild the run list", key="rebuild_runs", icon=":material/build:", type="primary"):
        rebuilt = rebuild_run_list(runs_dir())
        st.session_state["rebuilt_runs"] = len(rebuilt.added)
        st.rerun()


def files_missing(store, record) -> bool:
    """Whether a finished run's folder is gone (deleted by hand): nothing of it can be resumed or used."""
    return not record.is_active and not store.run_dir(record.id, resolve=False).is_dir()

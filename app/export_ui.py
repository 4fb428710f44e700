"""Export bundles for the Try and export page: built once per run (and rebuilt when the weights
change), zipped, and offered for download."""
from __future__ import annotations

import json
from pathlib import Path

from transfer_core.export import zip_bundle
from transfer_core.run_files import DECISION_FILE
from transfer_core.runs import export_run

from .data_ui import safe_name
from .resources import export_dir, get_store
from .results_ui import WEIGHTS_FILE


def bundle_zip(run_id: str) -> Path:
    return export_dir(run_id) / "bundle.zip"


def up_to_date(run_id: str) -> bool:
    """The zipped bundle holds the run's weights and its decision threshold as they are now."""
    store = get_store()
    zipped = bundle_zip(run_id)
    weights = store.run_dir(run_id) / WEIGHTS_FILE
    fresh = zipped.exists() and weights.exists() and zipped.stat().st_mtime >= weights.stat().st_mtime
    return fresh and _json_or_none(store.run_dir(run_id) / DECISION_FILE) == _json_or_none(
        export_dir(run_id) / "bundle" / DECISION_FILE)


def _json_or_none(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def build_bundle(run_id: str):
    """Export the run (verified against the trained model) and zip it; returns the ExportResult."""
    result = export_run(get_store(), run_id, export_dir(run_id) / "bundle")
    zip_bundle(result.path)
    return result


def readme(run_id: str) -> str:
    path = export_dir(run_id) / "bundle" / "README.md"
    return path.read_text(encoding="utf-8") if path.exists() else ""


def quickstart(text: str) -> str:
    """The README's "Use it" section: how to load the bundle in a few lines of Python."""
    start = text.find("## Use it")
    if start < 0:
        return text[:1500]
    end = text.find("\n## ", start + 5)
    section = text[start:end if end > 0 else None]
    return section.replace("## Use it", "#### Use it", 1)


def download_name(record) -> str:
    return safe_name(f"{record.name}-{record.id}", "model") + ".zip"

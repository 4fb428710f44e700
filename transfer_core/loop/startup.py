"""Checks made before a run starts or resumes: a run that cannot work is refused before anything is written."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from ..config import ConfigError, RunConfig, TrainConfig
from ..errors import DataError, RunError, RunFilesMissing
from ..events import RunStatus
from ..models import get_spec
from ..paths import DATA_PATH_FIELDS, check_config_paths
from ..preparation import guess_modality
from ..store import RunRecord, RunStore


def check_startable(config: RunConfig, *, runs_dir=None, allowed_roots: list | None = None) -> RunConfig:
    """Reject a run before anything is written: invalid settings, unknown model, missing data, and (with
    `allowed_roots`, the web app's folders) data or a local model folder outside those folders."""
    if allowed_roots is not None:
        check_config_paths(config, allowed_roots)
    config.check()
    spec = get_spec(config.model.name, runs_dir=runs_dir)
    for field_name in DATA_PATH_FIELDS:
        path = str(config.get(field_name) or "").strip()
        if path and not path.startswith("demo:") and not Path(path).exists():
            raise DataError(f"{field_name}: nothing at {path}; give an existing folder, .zip or CSV/TSV/JSONL file")
    modality = guess_modality(config.data.path, allowed_roots=allowed_roots)
    if spec.modality != modality:
        raise ConfigError(f"model.name {spec.name} is a {spec.modality} model but {config.data.path} holds {modality}s; "
                          f"pick a {modality} model (see `python -m transfer_core models`)")
    from ..models.network import check_downloadable
    check_downloadable(spec, config.model.pretrained)   # offline with nothing cached: refuse now, not inside the run
    return config


class ResumeRefused(RunError):
    """A resume or an extension refused before the run changed: the run keeps its status and files."""


def max_epochs() -> int:
    """train.epochs' upper limit, which an extension's total must respect too."""
    return next(f for f in dataclasses.fields(TrainConfig) if f.name == "epochs").metadata["max"]


def check_resumable(store: RunStore, run_id: str, extra_epochs: int = 0) -> RunRecord:
    """Refuse a resume or an extension that cannot work, before anything about the run is written:
    a mistaken command must leave a finished run as it was."""
    record = store.get_run(run_id)
    refusal = store.resume_refusal(record.id)
    if refusal:
        raise ResumeRefused(refusal)
    folder = store.run_dir(record.id, resolve=False)
    if not folder.is_dir():
        raise RunFilesMissing(record.id, folder)
    if extra_epochs < 0:
        raise ResumeRefused(f"extra epochs must be 0 or more, not {extra_epochs}; give the number of epochs to add")
    if record.status == RunStatus.COMPLETED and extra_epochs == 0:
        raise ResumeRefused(f"run {record.id} already finished all its epochs; extend it by giving a number of extra epochs")
    limit = max_epochs()
    epochs = record.total_epochs
    if epochs + extra_epochs > limit:
        fix = (f"add at most {limit - epochs}" if epochs < limit
               else f"start a new run from its weights instead (model run:{record.id})")
        raise ResumeRefused(f"run {record.id} has {epochs} epochs and {extra_epochs} more would pass the limit of "
                            f"{limit}; {fix}")
    return record

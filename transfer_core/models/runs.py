"""Start from a previous run: `run:<run_id>` rebuilds that run's model, loads its trained weights, and puts a new head on it.

A run directory holds config.json (the RunConfig), labels.json (the class
names) and weights.safetensors (the trained net's state dict). A run whose
base was itself a run works the same way, recursively.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from ..errors import ModelError
from ..run_files import CONFIG_FILE, LABELS_FILE, MODEL_FILES, WEIGHTS_FILE, default_runs_dir
from .base import BuiltModel, ModelSpec, RunOrigin
from .heads import is_hidden_units

PREFIX = "run:"
MAX_DEPTH = 32      # deeper chains mean a run that names itself (directly or not)


def run_dir_of(name: str, runs_dir: str | Path | None) -> Path:
    run_id = name[len(PREFIX):].strip()
    root = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    if not run_id or Path(run_id).name != run_id or run_id in (".", ".."):
        raise ModelError(f"'{name}' does not name a run; use run:<run id> with an id from the runs list")
    folder = root / run_id
    if not folder.is_dir():
        raise ModelError(f"run '{run_id}' was not found in {root}; pick a run from the runs list or check the runs folder")
    for fname in MODEL_FILES:
        if not (folder / fname).is_file():
            raise ModelError(f"run '{run_id}' has no {fname} (it did not finish saving a model); pick a run that completed")
    return folder


def _read_run(folder: Path) -> tuple[dict, list[str]]:
    try:
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        labels = json.loads((folder / LABELS_FILE).read_text(encoding="utf-8"))
        model = config["model"]
        base = model["name"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"run '{folder.name}' has an unreadable config.json or labels.json ({exc}); pick another run") from exc
    if not isinstance(labels, list) or not labels or not all(isinstance(c, str) for c in labels):
        raise ModelError(f"run '{folder.name}' has a labels.json that is not a list of class names; pick another run")
    if not isinstance(base, str) or not base.strip():
        raise ModelError(f"run '{folder.name}' names no model in its config.json; pick another run")
    return model, labels


def run_spec(name: str, runs_dir: str | Path | None = None, _depth: int = 0) -> ModelSpec:
    from .registry import get_spec
    if _depth > MAX_DEPTH:
        raise ModelError(f"{name} starts a chain of runs that loops back on itself; start from a registry model instead")
    folder = run_dir_of(name, runs_dir)
    model, labels = _read_run(folder)
    base_name = model["name"].strip()
    base = run_spec(base_name, runs_dir, _depth + 1) if base_name.startswith(PREFIX) else get_spec(base_name, runs_dir=runs_dir)
    shown = ", ".join(labels[:4]) + (", ..." if len(labels) > 4 else "")
    # The base's own parts (its head replacer, layer groups, files) with the run's weights and classes.
    return dataclasses.replace(
        base, name=name, source="run",
        description=f"{base_name} fine-tuned in run {folder.name} on {len(labels)} classes ({shown}).",
        # Only the architecture of the base is needed, not its pretrained weights.
        offline=base.source != "huggingface",
        default_image_size=int(model.get("image_size") or base.default_image_size),
        default_max_length=int(model.get("max_length") or base.default_max_length),
        builder=build_run, aliases=(),
        from_run=RunOrigin(base=base_name, run_dir=str(folder), labels=tuple(labels),
                           runs_dir=None if runs_dir is None else str(runs_dir), pooling=_run_pooling(model, base),
                           head_hidden=_run_head_hidden(model, folder), feature_layer=_run_feature_layer(model, folder)))


def _run_feature_layer(model: dict, folder: Path) -> str:
    """The group the run's head reads ("" in runs saved before model.feature_layer existed: the last one)."""
    layer = model.get("feature_layer") or ""
    if not isinstance(layer, str):
        raise ModelError(f"run '{folder.name}' has a model.feature_layer that is not a layer group's name; pick another run")
    return layer


def _run_head_hidden(model: dict, folder: Path) -> int:
    """The hidden units of the run's head (0 in runs saved before model.head_hidden existed: a linear head)."""
    hidden = model.get("head_hidden", 0)
    if not is_hidden_units(hidden):
        raise ModelError(f"run '{folder.name}' has a model.head_hidden that is not a number of units; pick another run")
    return hidden


def _run_pooling(model: dict, base: ModelSpec) -> str:
    """The pooling the run trained with ("auto" in its config: what auto meant for its base model)."""
    from .huggingface import default_pooling
    if base.modality != "text":
        return "auto"
    chosen = model.get("pooling", "cls")    # saved before model.pooling existed: the first token
    return default_pooling(base) if chosen == "auto" else chosen


def build_run(spec: ModelSpec, classes: list[str], *, pretrained: bool, head_dropout: float, head_hidden: int,
              image_size: int, max_length: int) -> BuiltModel:
    """The run's net with its trained weights; the trained head is kept when `classes` and `head_hidden`
    are the run's own, else a new head is put on."""
    from safetensors.torch import load_model

    from .registry import build_model, replace_head
    origin = spec.from_run
    assert origin is not None and spec.replace_head is not None   # run_spec sets both
    folder, labels = Path(origin.run_dir), list(origin.labels)
    # The run's own head shape, so its weights load; the head asked for replaces it below.
    built = build_model(origin.base, labels, pretrained=False, head_dropout=head_dropout, head_hidden=origin.head_hidden,
                        image_size=image_size, max_length=max_length, runs_dir=origin.runs_dir,
                        pooling=origin.pooling, feature_layer=origin.feature_layer)
    try:
        load_model(built.net, str(folder / WEIGHTS_FILE), strict=True)
    except RuntimeError as exc:
        if "size mismatch" in str(exc) and image_size != spec.default_image_size:
            raise ModelError(f"run '{folder.name}' was trained at model.image_size {spec.default_image_size}; "
                             f"set model.image_size to {spec.default_image_size}") from exc
        raise ModelError(f"the weights of run '{folder.name}' do not fit its model {origin.base}; "
                         "the run may come from another app version, pick another run") from exc
    except Exception as exc:    # a truncated or foreign file
        raise ModelError(f"could not read weights.safetensors of run '{folder.name}' ({type(exc).__name__}); pick another run") from exc
    built = dataclasses.replace(built, spec=spec)
    if list(classes) != list(labels) or head_hidden != origin.head_hidden:
        built = replace_head(built, classes, head_dropout, head_hidden)
    return built

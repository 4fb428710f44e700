"""The model registry: one name -> one spec, whatever the source (offline package, torchvision, hub, folder, run, test)."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Sequence

from ..errors import ModelError
from .base import BuiltModel, ModelSpec
from .heads import is_hidden_units
from .runs import PREFIX as RUN_PREFIX
from .runs import run_spec

DEFAULTS = {"image": "efficientnet_lite0", "text": "minilm_l6"}


@lru_cache(maxsize=1)
def _catalogue() -> dict[str, ModelSpec]:
    from . import huggingface, offline, tiny, torchvision_models
    specs = offline.specs() + torchvision_models.specs() + [huggingface.hf_spec(n) for n in huggingface.KNOWN] + tiny.specs()
    return {s.name: s for s in specs}


@lru_cache(maxsize=1)
def _aliases() -> dict[str, str]:
    out = {}
    for spec in _catalogue().values():
        out[spec.name.lower()] = spec.name
        for alias in spec.aliases:
            out[alias.lower()] = spec.name
    return out


def list_specs(modality: str | None = None) -> list[ModelSpec]:
    """The catalogue, offline models first, then torchvision, Hugging Face hub, and test models last."""
    return [s for s in _catalogue().values() if modality is None or s.modality == modality]


def default_model(modality: str) -> ModelSpec:
    """The offline model used when none is chosen: efficientnet_lite0 for images, minilm_l6 for texts."""
    if modality not in DEFAULTS:
        raise ModelError(f"unknown modality '{modality}'; use 'image' or 'text'")
    return _catalogue()[DEFAULTS[modality]]


def get_spec(name: str, *, runs_dir: str | Path | None = None,
             allowed_roots: Sequence[str | Path] | None = None) -> ModelSpec:
    """Spec for a registry name or alias, run:<id>, a local Hugging Face folder, or a hub id.

    With `allowed_roots` (the web app passes its runs and data folders), a local folder outside
    them is refused before anything in it is read."""
    from . import huggingface
    name = (name or "").strip()
    if not name:
        raise ModelError("no model named; pick one from `python -m transfer_core models`, e.g. efficientnet_lite0 or minilm_l6")
    if name.startswith(RUN_PREFIX):
        return run_spec(name, runs_dir)
    canonical = _aliases().get(name.lower())
    if canonical is not None:
        return _catalogue()[canonical]
    if huggingface.is_local(name) or "/" in name:
        if allowed_roots is not None and huggingface.is_local(name):
            from ..paths import check_allowed
            check_allowed(name, allowed_roots, what="model.name", error=ModelError)
        return huggingface.hf_spec(name)
    some = ", ".join(list(_catalogue())[:6])
    raise ModelError(f"unknown model '{name}'; use a registry name ({some}, ...), a Hugging Face hub id (org/name), "
                     "a local Hugging Face folder or run:<id>; see `python -m transfer_core models`")


def build_model(name: str, classes: list[str], *, pretrained: bool = True, head_dropout: float = 0.0,
                head_hidden: int = 0, image_size: int | None = None, max_length: int | None = None,
                runs_dir: str | Path | None = None, pooling: str = "auto", feature_layer: str = "") -> BuiltModel:
    """A network ready to fine-tune for `classes` (see BuiltModel for the batch contract); `pooling`
    is model.pooling (texts: how token states become the head's input; auto: as the model was trained),
    `head_hidden` model.head_hidden (0: a linear head; N: a head with one hidden layer of N units),
    `feature_layer` model.feature_layer (the layer group the head reads; "": the last, see feature_layer.py)."""
    classes = [str(c) for c in classes]
    if not classes:
        raise ModelError("no classes given; the data must have at least one labelled class")
    if len(set(classes)) != len(classes):
        raise ModelError("the class names contain duplicates; give each class one unique name")
    if not 0.0 <= head_dropout < 1.0:
        raise ModelError(f"model.head_dropout {head_dropout} is out of range; set it between 0 and 0.9")
    _check_hidden(head_hidden)
    spec = get_spec(name, runs_dir=runs_dir)
    built = spec.build(classes, pretrained=pretrained, head_dropout=head_dropout, head_hidden=head_hidden,
                       image_size=image_size, max_length=max_length)
    from . import huggingface
    from .feature_layer import read_from_layer
    built = huggingface.set_pooling(built, pooling, fresh=pretrained and spec.source != "run")
    return read_from_layer(built, feature_layer, head_dropout, head_hidden)


def _check_hidden(head_hidden: int) -> None:
    if not is_hidden_units(head_hidden):
        raise ModelError(f"model.head_hidden {head_hidden!r} is not a number of units; set 0 (a linear head) or more")


def replace_head(built: BuiltModel, classes: list[str], head_dropout: float = 0.0, head_hidden: int = 0) -> BuiltModel:
    """A new, randomly initialised final layer for `classes`; everything else (weights, preprocessing) is kept.

    The net is changed in place and shared with the returned BuiltModel.
    """
    classes = [str(c) for c in classes]
    if not classes or len(set(classes)) != len(classes):
        raise ModelError("a new head needs a non-empty list of unique class names; check the class list")
    if built.spec.replace_head is None:
        raise ModelError(f"model {built.spec.name} cannot get a new head; pick another model")
    _check_hidden(head_hidden)
    from .feature_layer import InnerLayerNet, replace_inner_head
    if isinstance(built.net, InnerLayerNet):   # its head is its own, not where the family keeps one
        return replace_inner_head(built, classes, head_dropout, head_hidden)
    return built.spec.replace_head(built, classes, head_dropout, head_hidden)

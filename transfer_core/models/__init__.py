"""Model registry: specs, building, head replacement and layer groups (see registry.py)."""
from .base import BuiltModel, ImagePreprocess, LayerGroup, ModelSpec, TextPreprocess, count_params, logits_of
from .grouping import check_groups
from .registry import build_model, default_model, get_spec, list_specs, replace_head

__all__ = [
    "BuiltModel", "ImagePreprocess", "LayerGroup", "ModelSpec", "TextPreprocess", "build_model", "check_groups",
    "count_params", "default_model", "get_spec", "list_specs", "logits_of", "replace_head",
]

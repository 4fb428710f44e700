"""Allowed roots: a front end shared over a network port (the web app) reads only under folders it owns.

The command line reads whatever path its user gives. The web app passes its roots (the runs and the
data folder) to `get_spec(..., allowed_roots=...)`, to `JobManager(..., allowed_roots=...)` and to the
data loaders (`prepare_data(..., allowed_roots=...)`), so a path typed into a page (a local model folder,
a data path in a config) or named inside a table (an image column) cannot read elsewhere on the machine.
Paths are resolved first (`..`, `~` and symbolic links), then compared.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from .errors import DataError, TransferError


def resolve_roots(roots: Iterable[str | Path]) -> list[Path]:
    """`roots` made absolute and free of `..`, `~` and symbolic links; resolve once, compare many paths."""
    return [Path(r).expanduser().resolve() for r in roots]


def lies_under(path: str | Path, resolved_roots: list[Path]) -> bool:
    """True when `path`, fully resolved, is one of `resolved_roots` (see resolve_roots) or lies below one."""
    resolved = Path(path).expanduser().resolve()
    return any(resolved == base or resolved.is_relative_to(base) for base in resolved_roots)


def is_within(path: str | Path, roots: Iterable[str | Path]) -> bool:
    """True when `path`, fully resolved, is one of `roots` or lies below one of them."""
    return lies_under(path, resolve_roots(roots))


def outside_rule(roots: Iterable[str | Path], thing: str = "it") -> str:
    """Why a path is refused, and what to do: the one wording of the rule for every refusal."""
    names = " or ".join(str(r) for r in roots) or "(none)"
    return (f"outside the folders this app may read; put {thing} under {names}, "
            "or use the command line (python -m transfer_core)")


def check_allowed(path: str | Path, roots: Iterable[str | Path], *, what: str = "path",
                  error: type[TransferError] = DataError) -> Path:
    """The resolved path when it lies under one of `roots`; else `error` with a one-line message."""
    roots = resolve_roots(roots)
    if lies_under(path, roots):
        return Path(path).expanduser().resolve()
    raise error(f"{what} {str(path)[:200]} is {outside_rule(roots)}")


DATA_PATH_FIELDS = ("data.path", "data.val_path", "data.test_path", "adapt.target", "adapt.target_val")


def check_config_paths(config, roots: Iterable[str | Path]) -> None:
    """Refuse a run config whose data paths or local model folder lie outside `roots` (demo: and hub names pass)."""
    from .errors import ModelError
    from .models import huggingface

    roots = list(roots)
    for field_name in DATA_PATH_FIELDS:
        value = str(config.get(field_name) or "").strip()
        if value and not value.startswith("demo:"):
            check_allowed(value, roots, what=field_name)
    name = (config.model.name or "").strip()
    if name and not name.startswith("run:") and huggingface.is_local(name):
        check_allowed(name, roots, what="model.name", error=ModelError)

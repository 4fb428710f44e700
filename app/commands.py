"""The command line that reproduces a run config (shown on the Train page)."""
from __future__ import annotations

import shlex
from pathlib import Path

from transfer_core.cli import ALIASES
from transfer_core.config import RunConfig, iter_fields

from .resources import runs_dir

# Settings with their own CLI flag: the CLI's short names.
FLAGS = ALIASES
ALWAYS = ("data.path", "model.name", "freeze.preset", "train.epochs")


def _show_path(value: str) -> str:
    if value.startswith("demo:") or not value:
        return value
    try:
        return str(Path(value).resolve().relative_to(Path.cwd()))
    except ValueError:
        return value


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def cli_command(cfg: RunConfig, name: str | None = None, processes: int = 1) -> str:
    """`python -m transfer_core train ...` with every setting that differs from the defaults (and `--devices N`
    for a run on several GPUs)."""
    defaults = {d: v for d, _, v in iter_fields(RunConfig())}
    try:   # the CLI picks the rates it is not given for the model (as the form does): name those that differ
        from transfer_core.freezing import recommended_rates
        from transfer_core.models import get_spec
        defaults.update(recommended_rates(get_spec(cfg.model.name, runs_dir=runs_dir()), cfg.optim.optimizer))
    except Exception:   # an unknown model: the page says so elsewhere; name the rates
        defaults.update({"optim.lr": None, "freeze.body_lr_factor": None})
    args = ["python", "-m", "transfer_core"]
    if runs_dir() != (Path.cwd() / "runs").resolve():
        args += ["--runs-dir", _show_path(str(runs_dir()))]
    args.append("train")
    extra = []
    for dotted, _, value in iter_fields(cfg):
        if value == defaults[dotted] and dotted not in ALWAYS:
            continue
        if dotted in ("data.path", "data.val_path", "data.test_path", "adapt.target", "adapt.target_val"):
            value = _show_path(value)
        if dotted in FLAGS:
            args += [FLAGS[dotted], _text(value)]
        else:
            extra += ["--set", f"{dotted}={_text(value)}"]
    if name:
        args += ["--name", name]
    if processes > 1:
        args += ["--devices", str(processes)]
    return " ".join(shlex.quote(a) for a in args + extra)

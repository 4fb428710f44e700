"""Process-wide resources shared by every browser session: one RunStore and one JobManager.

Both are created once per runs directory with `st.cache_resource` and are thread-safe.
The training threads belong to the JobManager; pages only read the store.
"""
from __future__ import annotations

import atexit
import logging
import os
import uuid
from pathlib import Path

import streamlit as st

from transfer_core.run_files import default_runs_dir


def runs_dir() -> Path:
    """`$TRANSFER_CORE_RUNS`, default `runs/` (the same default as the CLI, so CLI runs show up)."""
    return default_runs_dir().resolve()


def data_dir() -> Path:
    """`$TRANSFER_APP_DATA`, default `data/`: uploads, camera captures and export bundles."""
    return Path(os.environ.get("TRANSFER_APP_DATA", "data")).expanduser().resolve()


def allowed_roots() -> list[Path]:
    """The only folders a path typed into a page may name: the runs and the data folder, plus any in
    `$TRANSFER_APP_EXTRA_ROOTS` (separated by os.pathsep), e.g. a folder of local Hugging Face models."""
    extra = [Path(p).expanduser().resolve() for p in os.environ.get("TRANSFER_APP_EXTRA_ROOTS", "").split(os.pathsep)
             if p.strip()]
    return [runs_dir(), data_dir(), *extra]


def new_upload_dir(kind: str) -> Path:
    """A fresh folder under `<data>/uploads/` with a generated name; user input never picks the path."""
    folder = data_dir() / "uploads" / f"{kind}-{uuid.uuid4().hex[:12]}"
    folder.mkdir(parents=True, exist_ok=False)
    return folder


def export_dir(run_id: str) -> Path:
    return data_dir() / "exports" / run_id


def torch_threads() -> int:
    """Leave one core to the web server so pages stay responsive while a model trains."""
    configured = os.environ.get("TRANSFER_APP_TORCH_THREADS", "").strip()
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    return max(1, (os.cpu_count() or 2) - 1)


def cap_torch_threads() -> None:
    import torch

    wanted = torch_threads()
    if torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)


def log_to_terminal() -> None:
    """Warnings and errors of the engine and the pages (a failed run's message, an unexpected error's
    traceback) go to the terminal running the server, as the pages promise. Streamlit's own loggers do
    not propagate to the root logger, so this adds nothing to theirs; where the root logger already has
    a handler (a host application, pytest) basicConfig leaves it alone."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


_MANAGERS: list = []   # every JobManager this process created (tests shut them down between cases)


@st.cache_resource(show_spinner=False)
def _services(root: str):
    from transfer_core.jobs import JobManager
    from transfer_core.store import RunStore

    log_to_terminal()
    cap_torch_threads()
    # fit() imports scikit-learn lazily when it evaluates. A run stopped while the server shuts down
    # evaluates during interpreter exit, when new imports of it fail; import it now.
    import sklearn.metrics  # noqa: F401

    store = RunStore(root)
    jobs = JobManager(store, allowed_roots=allowed_roots())
    # On Ctrl-C of the server, running jobs stop at the next batch and write a checkpoint.
    atexit.register(jobs.shutdown, 20.0)
    _MANAGERS.append((store, jobs))
    return store, jobs


def shutdown_all(timeout: float = 30.0) -> None:
    """Stop every job of every JobManager created here and close their stores."""
    while _MANAGERS:
        store, jobs = _MANAGERS.pop()
        jobs.shutdown(timeout)
        store.close()


def get_store():
    return _services(str(runs_dir()))[0]


def get_jobs():
    return _services(str(runs_dir()))[1]

"""User-facing errors: each message is one line naming the problem and the fix."""
from __future__ import annotations

from typing import Any


class TransferError(Exception):
    """Base class for problems a user can fix (bad data, unknown model, wrong setting)."""


class DataError(TransferError):
    """The data cannot be used as given. `report`: the data report of the data as loaded, where one was made
    before the refusal (preparation.py attaches it, so the Data page can show why)."""
    report: Any = None


class ModelError(TransferError):
    """The model cannot be built or loaded as asked."""


class RunError(TransferError):
    """A run cannot be found, resumed or exported as asked."""


class TrainingDiverged(TransferError):
    """The loss became non-finite or exploded: the settings (usually the learning rate) are at fault.

    Carries advice, since the fix is a change of settings, not of the data."""

    def __init__(self, message: str, advice: str):
        super().__init__(message)
        self.advice = advice


class FixableRunError(RunError):
    """A run problem whose fix is done differently in the app (a button) and on the command line (a command).

    str() is the app's line; `cli_text` names the command. Both are one line: the problem, then the fix."""

    def __init__(self, problem: str, app_fix: str, cli_fix: str):
        super().__init__(f"{problem}; {app_fix}")
        self.problem = problem
        self.cli_text = f"{problem}; {cli_fix}"


class RunFilesMissing(FixableRunError):
    """A run's folder is gone (deleted by hand): it cannot be resumed, evaluated or exported."""

    def __init__(self, run_id: str, folder):
        self.run_id = run_id
        super().__init__(f"the files of run {run_id} are gone (no folder at {folder})",
                         "remove the run from the list with the Remove button on the Runs page",
                         f"remove it from the list with `python -m transfer_core runs --remove {run_id}`")


class StoreDamaged(FixableRunError):
    """The run database is damaged; the run folders still hold what is needed to rebuild the list."""

    def __init__(self, db_path, reason: str):
        super().__init__(f"the run database {db_path} is damaged ({reason})",
                         "rebuild the run list from the run folders with the Rebuild button (the damaged file is kept)",
                         "rebuild the run list from the run folders with `python -m transfer_core runs --rebuild` "
                         "(the damaged file is kept)")

"""Every way a run can fail, as one plain message, one piece of advice, and whether a resume can help."""
from __future__ import annotations

import errno

from ..config import ConfigError
from ..devices import is_out_of_memory
from ..errors import DataError, TrainingDiverged, TransferError

# Failures of the data or the settings: a resume would run into the same wall, so none is offered.
NOT_RESUMABLE = (DataError, ConfigError, TrainingDiverged)

_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_UNWRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST}


def describe_failure(exc: BaseException, batch_size: int) -> tuple[str, str]:
    """(message, advice) for any failure; `batch_size` is the one the run last trained with."""
    if is_out_of_memory(exc):
        if batch_size <= 1:
            return ("the device ran out of memory even at batch size 1",
                    "turn on mixed precision, use a smaller image size or max length, freeze more layer groups, "
                    "or pick a smaller model")
        return (f"the device ran out of memory with batch size {batch_size}",
                "lower train.batch_size, turn on mixed precision, use a smaller image size or freeze more layer groups")
    if isinstance(exc, TransferError):
        return str(exc), getattr(exc, "advice", "")
    if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
        where = f" while writing {exc.filename}" if exc.filename else ""
        return (f"the disk is full{where}",
                "free some disk space and resume the run (its last checkpoint is kept), or choose another runs directory")
    if isinstance(exc, OSError) and exc.errno in _UNWRITABLE:
        where = f" {exc.filename}" if exc.filename else " to the runs directory"
        return (f"cannot write{where} ({exc.strerror or exc})",
                "make the runs directory writable and resume the run, or choose another runs directory")
    return f"{type(exc).__name__}: {exc}", "see log.txt in the run folder; if the data is at fault, check the data report"


def is_environment_failure(exc: BaseException) -> bool:
    """Failures of the machine, not of the code: out of memory, a full disk, an unwritable folder."""
    return is_out_of_memory(exc) or (isinstance(exc, OSError) and exc.errno in _DISK_FULL | _UNWRITABLE)

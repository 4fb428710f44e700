"""User-facing errors: each message is one line naming the problem and the fix."""


class TransferError(Exception):
    """Base class for problems a user can fix (bad data, unknown model, wrong setting)."""


class DataError(TransferError):
    """The data cannot be used as given."""


class ModelError(TransferError):
    """The model cannot be built or loaded as asked."""


class RunError(TransferError):
    """A run cannot be found, resumed or exported as asked."""

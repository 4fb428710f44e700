"""User-facing errors: each message is one line naming the problem and the fix."""


class TransferError(Exception):
    """Base class for problems a user can fix (bad data, unknown model, wrong setting)."""


class DataError(TransferError):
    """The data cannot be used as given."""


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

"""Errors a user can hit, each with a message that says what, where and what was expected.

The CLI turns any ``FerryError`` into one red line and exit code 2, so the message is the whole
user interface of a failure: name the file, row, column or config key, and how to fix it.
"""


class FerryError(Exception):
    """Base class of every error Ferry raises on purpose (bad input, bad config, bad source)."""


class ConfigError(FerryError):
    """The configuration file or a --set override is invalid."""


class DataError(FerryError):
    """The dataset cannot be read or does not match its recorded version."""


class DataValidationError(FerryError):
    """The dataset was read but failed the validation suite; ``report`` points at the details."""

    def __init__(self, message: str, report: str | None = None) -> None:
        super().__init__(message)
        self.report = report


class PretrainedSourceError(FerryError):
    """A pretrained model source is missing, incomplete or not allowed (e.g. pickle weights)."""


class CheckpointError(FerryError):
    """A checkpoint belongs to another config/data version or cannot be loaded safely."""


class PromotionError(FerryError):
    """A promotion or rollback cannot be decided (no challenger, no previous champion, ...)."""


class DistributedError(FerryError):
    """A torchrun job failed (its processes' output says why)."""

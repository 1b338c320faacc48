"""User-facing errors.

Every :class:`OpticalError` is a mistake the user can fix (a path, a value, a missing file).
``run.py`` prints it as one line, ``error: <message>``, and exits with status 2 instead of a
traceback, so each message must say what is wrong *and* how to fix it.
"""


class OpticalError(Exception):
    """Base class of errors that are reported to the user as a single line."""


class ConfigError(OpticalError, ValueError):
    """An impossible or inconsistent configuration value."""


class DataError(OpticalError, ValueError):
    """A missing, malformed or empty data file."""


class ModelLoadError(OpticalError, OSError):
    """A model that cannot be found locally or on the Hugging Face hub."""


def user_error(exc: BaseException) -> OpticalError | None:
    """The :class:`OpticalError` behind ``exc``, also when a framework wrapped it (Hydra's
    ``instantiate`` re-raises constructor errors as ``InstantiationException ... from e``)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OpticalError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None

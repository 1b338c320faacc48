"""User-facing errors.

Every :class:`OpticalError` is a mistake the user can fix (a path, a value, a missing file).
``run.py`` prints it as one line, ``error: <message>``, and exits with status 2 instead of a
traceback, so each message must say what is wrong *and* how to fix it.
"""

from typing import TypeVar

E = TypeVar("E", bound=BaseException)


class OpticalError(Exception):
    """Base class of errors that are reported to the user as a single line."""


class ConfigError(OpticalError, ValueError):
    """An impossible or inconsistent configuration value."""


class DataError(OpticalError, ValueError):
    """A missing, malformed or empty data file."""


class ModelLoadError(OpticalError, OSError):
    """A model that cannot be found locally or on the Hugging Face hub."""


def cause_of(exc: BaseException | None, kind: type[E]) -> E | None:
    """The first exception of ``kind`` in the chain of ``exc`` (itself, what it was raised from or during)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, kind):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def user_error(exc: BaseException) -> OpticalError | None:
    """The :class:`OpticalError` behind ``exc``, also when a framework wrapped it (Hydra's
    ``instantiate`` re-raises constructor errors as ``InstantiationException ... from e``)."""
    return cause_of(exc, OpticalError)


class TrainingDiverged(OpticalError, ArithmeticError):
    """The loss or the student's weights stopped being finite numbers; the run keeps no output of them."""


class CheckpointWriteError(OpticalError, OSError):
    """A checkpoint could not be written (a full disk); the previous one is left as it was."""


class RunInterrupted(OpticalError):
    """Training stopped by Ctrl-C or SIGTERM; ``run.py`` exits with 128 + the signal number."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


def require_int(key: str, value: object, *, minimum: int | None = None, allow_none: bool = False) -> int | None:
    """``value`` as an integer >= ``minimum``, else a :class:`ConfigError` that names ``key``.

    Hydra passes command-line values through as typed (``data.batch_size=abc`` arrives as the
    string ``'abc'``), so constructors check them here instead of failing in a comparison later.
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        wanted = "an integer" + (" or null" if allow_none else "")
        raise ConfigError(f"{key}={value!r}: must be {wanted}{'' if minimum is None else f' >= {minimum}'}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{key}={value}: must be >= {minimum}" + (" (or null)" if allow_none else ""))
    return value


def as_list(value: object) -> list:
    """A list setting given as a single value (``retrieval.sets=udhr``) is a one-element list, not its characters."""
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        return [value]
    return list(value)

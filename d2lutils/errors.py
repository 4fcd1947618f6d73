"""The errors ``d2lutils`` raises on purpose.

Every one derives from :class:`D2LError`, and also from the built-in exception a
caller would expect (``ValueError``, ``FileNotFoundError``, ...), so existing
``except`` clauses keep working. Each message names what was wrong and what to do;
the book's Troubleshooting page lists them all. Anything else escaping from the
package is a bug.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "D2LError",
    "ArgumentError",
    "InputSizeError",
    "DatasetNotFoundError",
    "CorruptDatasetError",
    "TrainingDivergedError",
    "CheckpointError",
    "CheckpointMismatchError",
    "CheckpointCorruptError",
    "CheckpointLockedError",
    "DistributedError",
]


class D2LError(Exception):
    """Base class of every error the package raises on purpose."""


class ArgumentError(D2LError, ValueError, TypeError):
    """An argument has the wrong type or value. The message names the argument, the
    value it got and what is allowed. It is both a ``ValueError`` and a ``TypeError``."""


class InputSizeError(ArgumentError):
    """A net was given an input it cannot take (channels or height and width)."""


class DatasetNotFoundError(D2LError, FileNotFoundError):
    """Fashion-MNIST is nowhere on disk and could not be downloaded."""


class CorruptDatasetError(D2LError, ValueError):
    """A Fashion-MNIST file exists but is truncated, altered or not what it claims to be."""


class TrainingDivergedError(D2LError, FloatingPointError):
    """The training loss became NaN or infinite, or exploded while staying finite."""


class CheckpointError(D2LError, RuntimeError):
    """A checkpoint cannot be written, read or used."""


class CheckpointMismatchError(CheckpointError):
    """The checkpoint was written by another run (net, optimizer, data or profile)."""


class CheckpointCorruptError(CheckpointError):
    """The checkpoint (and its backup) cannot be read or fails its checksum."""


class CheckpointLockedError(CheckpointError):
    """Another process is training into the same checkpoint file."""


class DistributedError(D2LError, RuntimeError):
    """A multi-process (``torchrun``) run could not start or a rank failed."""


def check_int(name: str, value: Any, low: int | None = None, high: int | None = None,
              allow_none: bool = False) -> None:
    """Raise :class:`ArgumentError` unless ``value`` is an int (not a bool) in ``[low, high]``."""
    if value is None and allow_none:
        return
    ok = isinstance(value, int) and not isinstance(value, bool)
    if ok and ((low is not None and value < low) or (high is not None and value > high)):
        ok = False
    if not ok:
        if low is not None and high is not None:
            allowed = f"an int from {low:,} to {high:,}"
        elif low is not None:
            allowed = f"an int >= {low:,}"
        else:
            allowed = "an int"
        if allow_none:
            allowed += " or None"
        raise ArgumentError(f"{name} must be {allowed}; got {value!r}")


def check_number(name: str, value: Any, low: float | None = None, positive: bool = False) -> None:
    """Raise :class:`ArgumentError` unless ``value`` is a finite real number (``> 0`` if
    ``positive``, ``>= low`` if given)."""
    import math

    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and ((positive and value <= 0) or (low is not None and value < low)):
        ok = False
    if not ok:
        what = "a positive number" if positive else f"a number >= {low}" if low is not None else "a finite number"
        raise ArgumentError(f"{name} must be {what}; got {value!r}")


def check_bool(name: str, value: Any, allow_none: bool = False, also: str = "") -> None:
    """``also`` names another allowed value in the message (the caller checks it)."""
    if not (isinstance(value, bool) or (allow_none and value is None)):
        others = (", None" if allow_none else "") + (f", {also}" if also else "")
        raise ArgumentError(f"{name} must be True or False{others}; got {value!r}")

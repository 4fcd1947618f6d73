"""One atomic file write, used by every writer in the package.

A file is written to a temporary name in its own folder, flushed and synced, then
renamed over the target and the folder synced: a reader sees the old file or the
new one, never half of one, even if the process is killed or the machine loses
power mid-write. The temporary file is removed when anything fails.
"""

from __future__ import annotations

import errno
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from .errors import ArgumentError

__all__ = ["atomic_write", "atomic_write_text", "fsync_dir", "refuse_symlink"]


def fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (best effort; a no-op on Windows)."""
    if sys.platform.startswith("win"):
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def refuse_symlink(path: Path, what: str = "file") -> None:
    """Refuse to write through a symbolic link: a planted link would redirect the write
    to whatever file it points at."""
    if path.is_symlink():
        raise ArgumentError(f"{path} is a symbolic link (to {os.readlink(path)}); d2lutils does not "
                            f"write a {what} through a link. Remove the link, or choose another path.")


def atomic_write(path: Path, write: Callable[[IO[bytes]], None], *, keep_previous: Path | None = None,
                 what: str = "file") -> None:
    """Write ``path`` atomically: ``write(f)`` fills a temporary file, which replaces ``path``.

    Args:
        path: the file to write (its folder is created).
        write: called with the open binary temporary file.
        keep_previous: if given and ``path`` exists, ``path`` is first renamed to this
            name, so the last good file stays until the new one is in place.
        what: a word for error messages ("checkpoint", "history").

    Raises:
        ArgumentError: ``path`` is a symbolic link, or its folder cannot be written.
        OSError: the disk is full (``ENOSPC``) or another I/O error; the message names
            the file and its folder. The target is untouched in that case.
    """
    refuse_symlink(path, what)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    except OSError as e:
        raise ArgumentError(f"cannot write the {what} {path}: its folder {path.parent} is not "
                            f"writable ({e.strerror or e})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if keep_previous is not None and path.exists():
            os.replace(path, keep_previous)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except Exception as e:
        if _disk_full(e):
            raise OSError(errno.ENOSPC, f"no space left on the disk that holds {path.parent}: the {what} "
                          f"{path.name} was not written (the previous one, if any, is intact). Free some "
                          "space, or choose a folder on another disk") from None
        raise
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(path: Path, text: str, *, what: str = "file") -> None:
    """:func:`atomic_write` of a UTF-8 text."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")), what=what)


def _disk_full(e: BaseException) -> bool:
    # torch's zip writer reports ENOSPC as a RuntimeError whose text says so
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(e).lower()
    return isinstance(e, RuntimeError) and ("no space left" in text or "file write failed" in text)

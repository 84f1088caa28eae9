"""Atomic writes: a file is either what it was or the complete new content, never half of it.

A target that is not a regular file (``/dev/stdout``, a pipe, a terminal) is written in place.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from proxygym.envs.errors import ProxyGymError


def _special(path: Path) -> bool:
    """Whether ``path`` names something that is not a regular file: a terminal, a pipe, ``/dev/stdout``.
    Such a target is written in place: replacing it by a renamed file would destroy it."""
    return path.exists() and not path.is_dir() and not path.resolve().is_file()


def check_writable(path: "str | Path") -> None:
    """Fail now, in one line, if a file cannot be written at ``path`` (before any work is spent on it)."""
    path = Path(path)
    if _special(path):
        if not os.access(path, os.W_OK):
            raise ProxyGymError(f"cannot write {path}: permission denied")
        return
    try:
        if path.is_dir():
            raise IsADirectoryError("it is a folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        os.unlink(tmp)
    except OSError as err:
        raise ProxyGymError(f"cannot write {path}: {err.strerror or err}") from None


def write_bytes_atomic(path: "str | Path", data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``; a file that
    cannot be written is a one-line :class:`ProxyGymError`, and ``path`` keeps what it had."""
    path = Path(path)
    if _special(path):  # /dev/stdout, a pipe: nothing to keep whole, and nothing to rename over
        try:
            with open(path, "wb") as f:
                f.write(data)
        except OSError as err:
            raise ProxyGymError(f"cannot write {path}: {err.strerror or err}") from None
        return
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; give it a normal file's mode
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise ProxyGymError(f"cannot write {path}: {err.strerror or err}") from None
        raise


def write_text_atomic(path: "str | Path", text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))

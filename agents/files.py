"""Atomic writes: a file is either what it was or the complete new content, never half of it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from proxygym.envs.errors import ProxyGymError


def check_writable(path: "str | Path") -> None:
    """Fail now, in one line, if a file cannot be written at ``path`` (before any work is spent on it)."""
    path = Path(path)
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

"""Atomic writes: a file is either what it was or the complete new content, never half of it.

A target that is not a regular file (``/dev/stdout``, a pipe, a terminal), or is reached through
``/dev`` or ``/proc``, is written in place (appended to, as a stream); a link to a regular file
has its target replaced and stays a link.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from proxygym.envs.errors import ProxyGymError


def _special(path: Path) -> bool:
    """Whether ``path`` must be written in place: a terminal, a pipe, ``/dev/stdout`` (whatever it points to
    now, a file included), anything under ``/dev`` or ``/proc`` or reached through them by links. Replacing
    such a path by a renamed file would destroy it, and whoever holds it open would not see the new file."""
    hop = Path(os.path.abspath(path))
    for _ in range(40):  # the chain of links, as far as it goes
        if str(hop).startswith(("/dev/", "/proc/")):
            return True
        if not hop.is_symlink():
            break
        hop = Path(os.path.abspath(hop.parent / os.readlink(hop)))
    return hop.exists() and not hop.is_dir() and not hop.is_file()


def _real(path: Path) -> Path:
    """The file a path names: a symbolic link's target (renamed over, the link stays a link)."""
    return path.resolve() if path.is_symlink() else path


def _nearest_folder(path: Path, shown: Path) -> Path:
    """The nearest folder above ``path`` that exists (where a new file or folder would be made); a one-line
    error if the nearest thing that exists there is a file."""
    for parent in path.parents:
        if parent.is_dir():
            return parent
        if parent.exists() or parent.is_symlink():
            raise ProxyGymError(f"cannot write {shown}: {parent} is a file, not a folder")
    return Path(os.sep)


def _probe(folder: Path, shown: Path, make_folder: bool) -> None:
    """Make and remove a file (or, with ``make_folder``, a folder) in ``folder``: whether what is asked can be
    made there, whatever the permission bits, the file system or the user say; nothing is left behind."""
    try:
        if make_folder:
            os.rmdir(tempfile.mkdtemp(dir=folder, prefix=".proxygym."))
        else:
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".proxygym.", suffix=".tmp")
            os.close(fd)
            os.unlink(tmp)
    except OSError as err:
        raise ProxyGymError(f"cannot write {shown}: {err.strerror or err} in {folder}") from None


def check_writable(path: "str | Path") -> None:
    """Fail now, in one line, if a file cannot be written at ``path`` (before any work is spent on it). Nothing is
    made: a missing folder on the way is made when the file is written."""
    path = Path(path)
    if _special(path):
        if not os.access(path, os.W_OK):
            raise ProxyGymError(f"cannot write {path}: permission denied")
        return
    if path.is_dir():
        raise ProxyGymError(f"cannot write {path}: it is a folder")
    if path.parent.is_dir():
        _probe(path.parent, path, make_folder=False)
    else:
        _probe(_nearest_folder(path, path), path, make_folder=True)


def check_folder(path: "str | Path", option: str) -> None:
    """Fail now, in one line naming ``option``, if files cannot be written in the folder ``path`` (made when
    missing, as TensorBoard and train.py's run folders are); nothing is made here."""
    path = Path(path)
    try:
        if path.is_dir():
            _probe(path, path, make_folder=False)
        elif path.exists():
            raise ProxyGymError(f"cannot write {path}: it is a file, not a folder")
        else:
            _probe(_nearest_folder(path, path), path, make_folder=True)
    except ProxyGymError as err:
        raise ProxyGymError(f"{option} {path}: {err}".replace(f": cannot write {path}:", ": cannot write there:")) from None


def write_bytes_atomic(path: "str | Path", data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``; a file that
    cannot be written is a one-line :class:`ProxyGymError`, and ``path`` keeps what it had."""
    path = Path(path)
    if _special(path):  # /dev/stdout, a pipe: nothing to keep whole, and nothing to rename over
        try:
            sys.stdout.flush()  # what was printed first stays first (a redirected stdout is appended to)
            with open(path, "ab") as f:
                f.write(data)
        except OSError as err:
            raise ProxyGymError(f"cannot write {path}: {err.strerror or err}") from None
        return
    path = _real(path)
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

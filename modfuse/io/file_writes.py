"""Files written atomically: a temp file beside the target, fsync, one rename.

What a reader of any modfuse file relies on: it sees the old file or the new one, never half
of one, and a failed write (a full disk above all) leaves no file under the final name and
says so in one paragraph (:class:`FileWriteError`). Files get the mode ``open()`` would give
them: ``0o666`` less the user's umask. Imports nothing from modfuse.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PathLike = str | os.PathLike

#: The OS error codes that say the disk (or the user's quota) is full.
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})


class FileWriteError(OSError):
    """A file could not be written (the disk is full, a quota is reached, an I/O error).

    Nothing was left under the file's name: a file that was there before is unchanged, and the
    temporary file is removed. ``errno`` is the failed call's, ``filename`` the file's.
    """

    def __init__(self, path: PathLike, code: int | None, reason: str) -> None:
        full = code in DISK_FULL_ERRNOS
        what = f"the write failed ({reason})"
        if full:
            what = "the disk is full (no space left on device)"
        todo = "free some space" if full else "fix the cause"
        super().__init__(
            code,
            f"cannot write {path}: {what}. Nothing was written under that name (a file already "
            f"there is unchanged); {todo} and run again.",
        )
        self.filename = str(path)

    def __str__(self) -> str:
        return str(self.strerror)


def temp_beside(path: Path) -> tuple[int, Path]:
    """Create and open a new temporary file next to ``path``: ``(fd, temp path)``."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            # 0o666 as open() asks: the kernel applies the user's umask (mkstemp gives 0600).
            return os.open(tmp, flags | getattr(os, "O_CLOEXEC", 0), 0o666), tmp
        except FileExistsError:
            continue
        except OSError as err:
            if err.errno in DISK_FULL_ERRNOS:  # no inode left: the same problem as no block left
                raise FileWriteError(path, err.errno, err.strerror or str(err)) from err
            raise
    raise FileExistsError(f"no free temporary file name next to {path} after 100 tries")


@contextlib.contextmanager
def published_or_removed(path: Path, tmp: Path) -> Iterator[None]:
    """Remove ``tmp`` when the block fails, and name ``path`` in any OSError it raised."""
    try:
        yield
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and not isinstance(err, FileWriteError):
            raise FileWriteError(path, err.errno, err.strerror or str(err)) from err
        raise


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file and a rename, so no reader sees half.

    The file gets the mode open() would give it (``0o666`` less the user's umask).

    Raises:
        FileWriteError: the write failed (e.g. the disk is full); ``path`` is unchanged.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_beside(path)
    with published_or_removed(path, tmp):
        try:
            view = memoryview(data)
            while view:  # os.write may write less than asked
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)


def atomic_write_json(path: PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically (see :func:`atomic_write_bytes`).

    Examples:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "a.json"
        >>> atomic_write_json(path, {"epoch": 3})
        >>> json.loads(path.read_text())
        {'epoch': 3}
    """
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


__all__ = [
    "DISK_FULL_ERRNOS",
    "FileWriteError",
    "atomic_write_bytes",
    "atomic_write_json",
    "published_or_removed",
    "temp_beside",
]

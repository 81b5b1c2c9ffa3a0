"""Claiming a folder for one process: two ``modfuse run --out X`` started together, or two
writers of one synthetic world, must not both go ahead.

The claim is an advisory lock (``fcntl.flock``) on a file beside the folder,
``.<name>.lock``: the kernel releases it when the process exits, killed or not, so a claim of
a dead process never blocks anyone (no stale claims to recognise). The file records who holds
it, for the message another process gets. Where ``fcntl`` does not exist (Windows), the claim
is an ``O_EXCL`` file removed on exit; one left by a killed process names its pid, and is
taken over when that process no longer runs.

A process that holds a claim is granted it again at once (its data root may sit inside its
run folder); another process gets :class:`FolderInUseError`, or waits with ``wait=True``.

Examples:
    >>> import subprocess, sys, tempfile
    >>> root = Path(tempfile.mkdtemp()) / "run"
    >>> other = "from modfuse.io.folder_lock import claim_folder as c; "
    >>> other += f"c({str(root)!r}, 'x').__enter__()"
    >>> with claim_folder(root, "a run"):
    ...     with claim_folder(root, "a run"):  # this process again: granted
    ...         done = subprocess.run([sys.executable, "-c", other], capture_output=True)
    >>> done.returncode != 0 and b"is in use by another process" in done.stderr
    True
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["FolderInUseError", "claim_folder", "lock_path"]


class FolderInUseError(OSError):
    """Another live process holds the folder's claim."""


def lock_path(folder: str | os.PathLike) -> Path:
    """The claim file of ``folder``: ``.<name>.lock`` beside it (inside, it would make an
    empty folder look used)."""
    folder = Path(folder).resolve()  # a symlink and its target share one claim
    return folder.parent / f".{folder.name}.lock"


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not isinstance(info, dict) or "pid" not in info:
        return "pid unknown"
    return f"pid {info.get('pid')} on {info.get('host')}, since {info.get('since')}"


def _record() -> bytes:
    since = time.strftime("%Y-%m-%d %H:%M:%S")
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": since}).encode()


@contextlib.contextmanager
def claim_folder(folder: str | os.PathLike, what: str, wait: bool = False) -> Iterator[Path]:
    """Hold ``folder`` for this process while the block runs; yields the claim file's path.

    Args:
        folder: The folder to claim (it need not exist; its parent is created).
        what: What the folder is for, in the error message ("the run folder").
        wait: Wait for another holder to finish instead of failing (a data root that the
            other process is writing: once it is done, this one reuses what it wrote).

    Raises:
        FolderInUseError: another live process holds the claim and ``wait`` is off.
    """
    path = lock_path(folder)
    if path in _HELD:  # this process holds it already (a data root inside its run folder)
        yield path
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    _HELD.add(path)
    try:
        with _claimed(path, folder, what, wait):
            yield path
    finally:
        _HELD.discard(path)


#: Claim files this process holds: a second claim of one of them is granted at once (a lock
#: taken again on another descriptor would wait on itself).
_HELD: set[Path] = set()


@contextlib.contextmanager
def _claimed(path: Path, folder: str | os.PathLike, what: str, wait: bool) -> Iterator[None]:
    """The claim itself: flock where it exists, else an exclusive file."""
    if fcntl is None:
        with _exclusive_file(path, folder, what, wait):
            yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise FolderInUseError(
                f"{Path(folder)} is in use by another process ({_holder(path)}) as {what}; two "
                "processes writing one folder would mix their files. Wait for it to finish, or "
                "give another folder"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, _record())
        yield
    finally:
        os.close(fd)  # releases the lock


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists but is not ours to signal
    return True


@contextlib.contextmanager
def _exclusive_file(path: Path, folder: str | os.PathLike, what: str, wait: bool) -> Iterator[None]:
    """The claim without flock: an O_EXCL file, taken over when its writer is dead."""
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            try:
                pid = int(json.loads(path.read_text()).get("pid", -1))
            except (OSError, ValueError, AttributeError):
                pid = -1
            if pid > 0 and not _alive(pid):
                path.unlink(missing_ok=True)  # the claim of a process that no longer runs
                continue
            if not wait:
                raise FolderInUseError(
                    f"{Path(folder)} is in use by another process ({_holder(path)}) as {what}; "
                    "wait for it to finish, or give another folder"
                ) from None
            time.sleep(0.5)
    try:
        os.write(fd, _record())
        os.close(fd)
        yield
    finally:
        path.unlink(missing_ok=True)

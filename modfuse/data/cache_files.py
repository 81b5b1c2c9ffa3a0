"""The files of a :class:`modfuse.data.FeatureCache` folder: cleaning up after killed writes.

Split out of :mod:`modfuse.data.cache`, which decides what an entry holds and when to compute
it; this module knows the folder's files.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

__all__ = ["STALE_TEMPORARY_S", "TEMPORARY", "remove_stale_temporaries"]

#: A temporary file untouched for this long is taken as left by a killed write.
STALE_TEMPORARY_S = 60.0

#: The temporary files of a cache write: ``.<entry>.<random>.tmp``, which
#: :func:`modfuse.io.tensor_files.save_tensors` renames to the entry, and ``.tmp<6 characters>``,
#: which safetensors (>= 0.5) writes the bytes to first and renames over the former.
TEMPORARY = re.compile(r"^\..+\.safetensors\.[A-Za-z0-9_]+\.tmp$|^\.tmp[A-Za-z0-9]{6}$")


def remove_stale_temporaries(
    root: str | os.PathLike, older_than: float = STALE_TEMPORARY_S
) -> list[str]:
    """Remove the temporary files a killed cache write left in ``root``; returns their names.

    An entry is written to ``.<entry>.safetensors.<random>.tmp`` (its bytes first to
    safetensors' own ``.tmpXXXXXX``) and renamed when complete; a process killed in between
    leaves those files behind. Only such files not modified for ``older_than`` seconds are
    removed: a live writer modifies its file as it writes and renames it at once after, so a
    file untouched for a minute belongs to a dead writer (the names hold no process id to
    ask; machines sharing the folder are taken to agree on the time within that). A
    concurrent writer's fresh file is left alone, and so is every other file.

    Examples:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> _ = (root / ".fg-1a2b.safetensors.x7k2m9q1.tmp").write_bytes(b"half an entry")
        >>> remove_stale_temporaries(root), remove_stale_temporaries(root, older_than=0)
        ([], ['.fg-1a2b.safetensors.x7k2m9q1.tmp'])
    """
    root = Path(root)
    if not root.is_dir():
        return []
    now, removed = time.time(), []
    for path in sorted(root.iterdir()):
        if not TEMPORARY.match(path.name):
            continue
        try:
            if now - path.stat().st_mtime < older_than or not path.is_file():
                continue
            path.unlink()
        except FileNotFoundError:
            continue  # its writer renamed it, or another cache removed it, meanwhile
        removed.append(path.name)
    return removed

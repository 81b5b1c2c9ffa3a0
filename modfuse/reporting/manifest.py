"""What a result depends on beyond its config: package versions, the hardware it ran on, the
code revision, and content hashes of generated data. Every report's manifest.json holds it,
because the same config and seed give other numbers under other versions or CPU kernels.

Examples:
    >>> env = environment()
    >>> sorted(env)
    ['argv', 'git_revision', 'hardware', 'versions']
    >>> {"python", "torch", "torchvision", "timm", "numpy", "pillow", "pycocotools"} <= set(
    ...     env["versions"])
    True
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["PACKAGES", "environment", "folder_digest", "hardware"]

#: Distributions whose versions every manifest records (name in the manifest -> on PyPI).
PACKAGES = {
    "torch": "torch",
    "torchvision": "torchvision",
    "timm": "timm",
    "numpy": "numpy",
    "pillow": "pillow",
    "pycocotools": "pycocotools",
    "safetensors": "safetensors",
    "modfuse": "modfuse",
}


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware() -> dict[str, Any]:
    """The CPU, its core count, torch's thread count and every visible GPU."""
    import torch

    gpus = []
    if torch.cuda.is_available():
        gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpus": gpus,
        "cuda": torch.version.cuda if gpus else None,
        "platform": platform.platform(),
    }


def environment() -> dict[str, Any]:
    """Versions (python and :data:`PACKAGES`), hardware, git revision and command line."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    versions.update({name: _version(dist) for name, dist in PACKAGES.items()})
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).parent,
        )
        git = rev.stdout.strip() if rev.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        git = None
    return {"versions": versions, "hardware": hardware(), "git_revision": git, "argv": sys.argv}


def folder_digest(root: str | os.PathLike) -> str:
    """A hash of every file under ``root``: relative paths and bytes (20 hex digits).

    For generated data (a synthetic world), so that a manifest says which bytes a result
    came from; two worlds hash equal only when every file is equal.

    Raises:
        FileNotFoundError: ``root`` is not a folder.

    Examples:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp()); _ = (d / "a.txt").write_text("x")
        >>> first = folder_digest(d); _ = (d / "a.txt").write_text("y")
        >>> first == folder_digest(d)
        False
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"expected a folder to hash, got {root} (not a folder)")
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()[:20]

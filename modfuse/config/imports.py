"""``imports:`` in a config and ``--import`` on a command: the user's modules, imported before
any name is checked, so the encoders, fusions, attacks and regularizers they register are
known everywhere the built-in ones are."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["import_listed", "import_modules"]


def import_modules(modules: Sequence[str]) -> None:
    """Import each module (registering its components), naming the one that fails.

    Raises:
        ImportError: a module cannot be imported; the message names it and the config key.
    """
    if modules and os.getcwd() not in sys.path and "" not in sys.path:
        # As `python -m` does: a module beside the config, in the folder the command runs
        # from, imports as it would from a script there.
        sys.path.append(os.getcwd())
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ImportError(
                f"imports: cannot import {module!r} ({err}); is its package installed or on "
                "PYTHONPATH (run from the folder that holds it)?"
            ) from err


def import_listed(data: Any) -> Any:
    """Import the modules a raw config mapping lists under ``imports`` (a pydantic
    ``mode="before"`` step: they must be registered before any name is checked)."""
    if isinstance(data, dict) and isinstance(data.get("imports"), list):
        import_modules([str(m) for m in data["imports"]])
    return data

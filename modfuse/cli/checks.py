"""Checks the ``modfuse`` command makes before it writes or trains (the run folder, a resume)
and the one-paragraph form of a config's validation errors.

Examples:
    >>> old = {"seed": 0, "train": {"lr": 0.001, "epochs": 3}}
    >>> config_differences(old, {"seed": 0, "train": {"lr": 0.01, "epochs": 9}})
    ['train.lr: 0.001 -> 0.01']
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from torch import nn

__all__ = [
    "RESUMABLE_CHANGES",
    "check_resume_fits",
    "check_run_folder",
    "config_differences",
    "validation_paragraph",
]

#: Config fields a resume may change: they do not change what was trained so far (more
#: epochs, another machine, other workers, other evaluation sweeps, the report's title).
RESUMABLE_CHANGES = ("name", "device", "data.workers", "train.epochs", "eval")
#: What a folder holds once `modfuse run` has written to it.
RUN_FILES = ("config.yaml", "checkpoints", "model", "report", "history.json", "best.safetensors")


_UNSET = object()


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        if not value:
            return {prefix: {}}
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, list) and value:
        out = {}
        for i, v in enumerate(value):
            out.update(_flatten(v, f"{prefix}.{i}"))
        return out
    return {prefix: value}


def _shown(value: Any) -> str:
    if value is _UNSET:
        return "(unset)"
    return value if isinstance(value, str) else json.dumps(value)


def config_differences(
    old: Mapping[str, Any], new: Mapping[str, Any], ignore: tuple[str, ...] = RESUMABLE_CHANGES
) -> list[str]:
    """Fields that differ between two configs (as JSON-like dicts), one ``path: old -> new``
    line each, in the order of ``new``; fields under a path in ``ignore`` are left out."""
    flat_old, flat_new = _flatten(old), _flatten(new)
    keys = list(flat_new) + [k for k in flat_old if k not in flat_new]
    lines = []
    for key in keys:
        if any(key == p or key.startswith(p + ".") for p in ignore):
            continue
        a, b = flat_old.get(key, _UNSET), flat_new.get(key, _UNSET)
        if a != b:
            lines.append(f"{key}: {_shown(a)} -> {_shown(b)}")
    return lines


def check_run_folder(out: Path, config: Mapping[str, Any], resume: bool, force: bool) -> list[str]:
    """Whether ``modfuse run`` may write to ``out``; returns the config changes a forced resume
    carries (to be announced), none otherwise.

    Args:
        out: The run folder.
        config: The config about to run, as JSON-like data (``cfg.model_dump(mode="json")``).
        resume: ``--resume``: continue the run in ``out``.
        force: ``--force``: resume even where the config differs from the saved one.

    Raises:
        ValueError: ``out`` already holds a run and ``resume`` is off; or ``resume`` is on and
            the config differs from ``out/config.yaml`` (the differences listed) and ``force``
            is off.
    """
    from modfuse.config.loading import load_yaml_text
    from modfuse.config.schema import ExperimentConfig

    held = [name for name in RUN_FILES if (out / name).exists()]
    if not resume:
        if held:
            raise ValueError(
                f"{out} already holds a run ({', '.join(held)}); nothing was overwritten. Pass "
                "--resume to continue it, or --out with another folder for a new run"
            )
        return []
    saved = out / "config.yaml"
    if not saved.is_file():
        if held and not force:
            raise ValueError(
                f"cannot resume {out}: it holds {', '.join(held)} but no config.yaml to compare "
                "the config with; pass --force to resume anyway, or --out for a new run"
            )
        return []
    try:
        previous = load_yaml_text(saved.read_text())
    except ValueError as err:
        raise ValueError(f"cannot compare the config with {saved}: {err}") from None
    if not isinstance(previous, dict):
        raise ValueError(f"{saved}: expected a mapping, got {type(previous).__name__}")
    try:  # defaults filled in, so that a field added since then is no difference
        previous = ExperimentConfig.model_validate(previous).model_dump(mode="json")
    except ValidationError:
        pass  # a config this version no longer accepts: compared as written
    changes = config_differences(previous, config)
    if changes and not force:
        raise ValueError(
            f"--resume: the config differs from the one {out} was trained with ({saved}):\n  "
            + "\n  ".join(changes)
            + "\nResume with the saved config, pass --force to resume with this one anyway, or "
            "--out with another folder for a new run"
        )
    return changes


def check_resume_fits(model: nn.Module, out: Path) -> None:
    """Raise unless the latest checkpoint in ``out/checkpoints`` fits ``model``'s tensors.

    Read from the checkpoint's safetensors header only, before the Trainer loads it.

    Raises:
        ValueError: the checkpoint holds other tensors or shapes (another architecture).
    """
    from modfuse.io.tensor_files import check_state_fits, read_json, saved_dtypes, saved_shapes

    latest = out / "checkpoints" / "latest.json"
    if not latest.is_file():
        return
    entry = read_json(latest)
    folder = entry.get("folder") if isinstance(entry, dict) else None
    if not isinstance(folder, str) or Path(folder).name != folder:
        raise ValueError(f"{latest} names no checkpoint folder (got {entry!r})")
    weights = out / "checkpoints" / folder / "model.safetensors"
    state = model.state_dict()
    check_state_fits(
        {k: tuple(v.shape) for k, v in state.items()},
        saved_shapes(weights),
        f"cannot resume {out}: its checkpoint was trained with another architecture than the "
        "model this config builds; resume with the config saved in the run folder, or start a "
        "new run with --out",
        expected_dtypes={k: v.dtype for k, v in state.items()},
        saved_dtypes=saved_dtypes(weights),
    )


def validation_paragraph(err: ValidationError) -> str:
    """One line per problem, ``field.path: what was expected (got what came)``."""
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        got = "" if e["type"] == "value_error" else f" (got {e.get('input')!r:.80})"
        lines.append(f"  {where}: {msg}{got}")
    return "\n".join(lines)

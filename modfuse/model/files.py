"""A saved model's folder: ``model.safetensors`` + ``config.json``, never pickle.

What :meth:`modfuse.FusionModel.save` and :meth:`modfuse.FusionModel.load` call. It knows a
model only as a state dict, a JSON-able spec and a function that builds a model from that
spec, so it imports nothing that imports it back (:mod:`modfuse.model.fusion_model`
depends on this module, never the other way round).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from modfuse.io.tensor_files import (
    PathLike,
    atomic_write_json,
    check_state_fits,
    load_tensors,
    read_json,
    save_tensors,
    saved_dtypes,
    saved_shapes,
)

MODEL_FORMAT = "modfuse.FusionModel"

#: The config.json version :func:`write_model` writes, the newest :func:`read_model` reads.
MODEL_VERSION = 1

M = TypeVar("M", bound=nn.Module)


def _without_weight_files(spec: Any) -> Any:
    # Saved tensors replace whatever an encoder's `weights=` file held: loading needs no file.
    if isinstance(spec, Mapping):
        return {k: (None if k == "weights" else v) for k, v in spec.items()}
    return spec


def write_model(
    directory: PathLike,
    state: Mapping[str, torch.Tensor],
    spec: Mapping[str, Any],
    modules: Sequence[str] = (),
) -> None:
    """Write ``model.safetensors`` (``state``) and ``config.json`` (``spec``, and the
    ``modules`` that registered the user's components) in ``directory``.

    Args:
        directory: The model's folder (created if needed).
        state: The model's ``state_dict()``.
        spec: What rebuilds the model (``FusionModel.spec``); ``None`` marks a component that
            was passed as a module and so has no name to store.

    Raises:
        ValueError: when a component was passed as a module and has no registry name to store.
    """
    unnamed = [m for m, s in spec["encoders"].items() if s is None]
    if unnamed or spec["fusion"] is None:
        what = f"encoder {unnamed[0]!r}" if unnamed else "the fusion"
        raise ValueError(
            f"cannot save: {what} was passed as a module, so config.json could not name it; "
            "register it (@register_encoder / @register_fusion) and pass its name instead"
        )
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_tensors(directory / "model.safetensors", state, {"format": MODEL_FORMAT})
    spec = {**spec, "encoders": {m: _without_weight_files(s) for m, s in spec["encoders"].items()}}
    config: dict[str, Any] = {"format": MODEL_FORMAT, "version": MODEL_VERSION, "model": spec}
    if modules:  # where the user's components came from, named when loading misses them
        config["modules"] = sorted(modules)
    atomic_write_json(directory / "config.json", config)


def _meta_state(
    spec: Mapping[str, Any], build: Callable[[dict[str, Any]], nn.Module]
) -> dict[str, torch.Tensor] | None:
    """The state of the model ``spec`` describes, built on the meta device (nothing is
    allocated, however large ``num_classes`` is); None when a component cannot be built there.
    """
    try:
        with torch.device("meta"):
            model = build(dict(spec))
    except KeyError:
        raise  # an unregistered component: read_model explains
    except Exception:  # a component whose constructor needs real tensors: checked after
        return None
    return dict(model.state_dict())


def _check_version(config: Mapping[str, Any], config_path: Path) -> None:
    # A newer modfuse may store what this one would misread: refuse rather than guess.
    version = config.get("version")
    if type(version) is int and version > MODEL_VERSION:
        raise ValueError(
            f"{config_path} has config version {version}, newer than this modfuse supports "
            f"(versions up to {MODEL_VERSION}): it was saved by a newer modfuse; upgrade "
            "modfuse to load it"
        )
    if type(version) is not int or version < 1:
        raise ValueError(
            f"{config_path} has config version {version!r}; expected an integer from 1 to "
            f"{MODEL_VERSION}, as modfuse writes"
        )


def read_model(directory: PathLike, build: Callable[[dict[str, Any]], M]) -> M:
    """Rebuild a model written by :func:`write_model`.

    The tensors' names, shapes and dtypes in ``model.safetensors`` are checked against the
    model that ``config.json`` describes (built first on the meta device) before any weight is
    allocated: a ``num_classes`` of 10**12 in an edited config.json fails here, not in the
    allocator, and a weight whose dtype was changed in the file's header is refused rather
    than converted.

    Args:
        directory: The model's folder.
        build: Builds the model from the stored spec (``FusionModel.from_spec``).

    Raises:
        FileNotFoundError: a file is missing.
        KeyError: the config names a component not registered in this process.
        ValueError: the config is not a saved FusionModel's (or is of a newer version), or the
            weights do not fit it (names, shapes, dtypes).
    """
    directory = Path(directory)
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found; is {directory} a saved FusionModel?")
    config = read_json(config_path)
    if not isinstance(config, dict) or config.get("format") != MODEL_FORMAT:
        raise ValueError(f"{config_path} is not a {MODEL_FORMAT} config")
    _check_version(config, config_path)
    spec = config.get("model")
    if not isinstance(spec, dict):
        raise ValueError(f"{config_path}: expected a 'model' mapping, got {type(spec).__name__}")
    weights = directory / "model.safetensors"
    saved, dtypes = saved_shapes(weights), saved_dtypes(weights)
    what = (
        f"{weights} does not fit the model {config_path} describes (num_classes="
        f"{spec.get('num_classes')!r}, fusion_dim={spec.get('fusion_dim')!r})"
    )
    try:
        expected = _meta_state(spec, build)
        if expected is not None:
            _check_fits(expected, saved, dtypes, what)
        model = build(dict(spec))
    except KeyError as err:
        modules = config.get("modules") or []
        where = (
            f"Its components came from {modules}: import them before loading (`imports: "
            f"{modules}` in a config, or `--import {modules[0]}` on the command line)."
            if modules
            else "If it names your own component, import the module that registers it "
            "before loading."
        )
        raise KeyError(f"cannot rebuild the model in {directory}: {err.args[0]}. {where}") from err
    except TypeError as err:
        raise ValueError(f"cannot rebuild the model in {config_path}: {err}") from err
    _check_fits(model.state_dict(), saved, dtypes, what)
    model.load_state_dict(load_tensors(weights), strict=True)
    return model


def _check_fits(
    state: Mapping[str, torch.Tensor],
    saved: Mapping[str, tuple[int, ...]],
    dtypes: Mapping[str, torch.dtype | str],
    what: str,
) -> None:
    check_state_fits(
        {k: tuple(v.shape) for k, v in state.items()},
        saved,
        what,
        expected_dtypes={k: v.dtype for k, v in state.items()},
        saved_dtypes=dtypes,
    )

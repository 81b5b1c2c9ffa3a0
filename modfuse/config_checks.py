"""Checks of component specs when a config loads, so that a bad argument fails before training.

A spec (``"small_cnn"`` or ``{"name": "pgd", "steps": 10}``) is checked against its registry:
the name is registered, the arguments bind to the factory's signature, every argument with a
type annotation holds a value of that type (YAML has no tuples: a list stands for one), and
every number is finite. Light components (attacks, regularizers) are also built, so that their
constructors' own checks (``steps >= 1``, at least one target) run at load time; encoders and
fusions are not built here (a timm backbone is too heavy for a config check).

Examples:
    >>> from modfuse._registry import ATTACKS, ENCODERS
    >>> check_component(ENCODERS, {"name": "small_cnn", "width": 8})
    >>> check_component(ENCODERS, {"name": "small_cnn", "width": 2.5})
    Traceback (most recent call last):
    ...
    ValueError: encoder 'small_cnn': argument 'width' must be int, got 2.5 (float)
    >>> check_component(ATTACKS, {"name": "pgd", "steps": 3}, build=True)
    PGD(...)
"""

from __future__ import annotations

import functools
import inspect
import math
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import ConfigDict, TypeAdapter
from pydantic import ValidationError as PydanticValidationError

from modfuse._registry import Registry
from modfuse.views import ContextViews

__all__ = ["check_component", "check_device", "spec_name"]

_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


def spec_name(spec: str | Mapping[str, Any]) -> str:
    """The registered name a spec refers to."""
    return spec if isinstance(spec, str) else str(spec.get("name"))


def check_component(
    registry: Registry[Any],
    spec: str | Mapping[str, Any],
    injected: tuple[str, ...] = (),
    build: bool = False,
) -> Any:
    """Check ``spec`` against ``registry``; returns the built component when ``build``.

    Args:
        registry: The registry the spec names a component of.
        spec: A registered name or a ``{"name": ..., **kwargs}`` mapping.
        injected: Arguments the library passes itself (a fusion's ``in_dims``, ``out_dim``).
        build: Also build the component, so that its constructor checks its arguments.

    Raises:
        ValueError: the name is not registered, an argument is unknown, missing, of the wrong
            type or not finite, or the constructor refused the arguments.
    """
    name = spec_name(spec)
    if name not in registry:
        raise ValueError(f"unknown {registry.kind} {name!r}; registered: {registry.names()}")
    what = f"{registry.kind} {name!r}"
    kwargs = {} if isinstance(spec, str) else {k: v for k, v in spec.items() if k != "name"}
    for key, value in kwargs.items():
        _check_finite(value, f"{what}: argument {key!r}")
    resolved = registry.resolve(name)
    factory, args = resolved.factory, resolved.args
    signature = _signature(factory)
    if signature is not None:
        try:
            signature.bind(*args, **kwargs, **{k: None for k in injected})
        except TypeError as err:
            raise ValueError(f"{what}: {err}; it takes {_accepted(factory)}") from None
        hints = _type_hints(factory)
        for key, value in kwargs.items():
            param = signature.parameters.get(key)
            if param is None or param.kind in _VARIADIC or key not in hints:
                continue
            if not _fits(hints[key], value):
                shown = param.annotation if isinstance(param.annotation, str) else hints[key]
                raise ValueError(
                    f"{what}: argument {key!r} must be {_readable(shown)}, got {value!r} "
                    f"({type(value).__name__})"
                )
    if not build:
        return None
    try:
        return registry.create(spec if isinstance(spec, str) else dict(spec))
    except (TypeError, ValueError, KeyError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        if isinstance(err, TypeError) and "unexpected keyword" in str(err):
            message = f"{message}; it takes {_accepted(factory)}"
        raise ValueError(f"{what}: {message}") from None


def check_device(device: str) -> str:
    """``device`` if torch can parse it (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``).

    Raises:
        ValueError: torch does not know the device string.
    """
    import torch

    try:
        torch.device(device)
    except RuntimeError as err:
        raise ValueError(
            f"device {device!r} is not a torch device; expected e.g. 'cpu', 'cuda', 'cuda:1'"
        ) from err
    return device


def _check_finite(value: Any, where: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} must be a finite number, got {value}")
    if isinstance(value, Mapping):
        for k, v in value.items():
            _check_finite(v, f"{where}[{k!r}]")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_finite(v, f"{where}[{i}]")


def _signature(factory: Any) -> inspect.Signature | None:
    try:
        return inspect.signature(factory)
    except (TypeError, ValueError):
        return None  # a factory without a readable signature: checked when built


def _accepted(factory: Any) -> list[str]:
    """The keyword arguments a factory names (with those its base classes take through
    ``**kwargs``), for error messages."""
    if inspect.isclass(factory):
        inits = [c.__dict__["__init__"] for c in factory.__mro__[:-1] if "__init__" in c.__dict__]
    else:
        inits = [factory]
    names: list[str] = []
    for init in inits:
        signature = _signature(init)
        if signature is None:
            break
        params = signature.parameters.values()
        names += [p.name for p in params if p.kind not in _VARIADIC and p.name not in names]
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            break
    return [n for n in names if n != "self"]


def _type_hints(factory: Any) -> dict[str, Any]:
    """The factory's resolved annotations; none when they cannot be resolved here."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # a forward reference this module cannot resolve: skip type checks
        return {}
    return {k: v for k, v in hints.items() if v is not Any and k != "return"}


@functools.lru_cache(maxsize=256)
def _adapter(hint: Any) -> TypeAdapter[Any] | None:
    try:
        return TypeAdapter(hint, config=ConfigDict(arbitrary_types_allowed=True))
    except Exception:  # a type pydantic cannot check: leave it to the constructor
        return None


def _fits(hint: Any, value: Any) -> bool:
    """Whether ``value`` is of type ``hint``, strictly (``2.5`` is no ``int``, ``"3"`` neither)."""
    try:
        adapter = _adapter(hint)
    except TypeError:  # an unhashable annotation
        return True
    if adapter is None:
        return True
    for candidate in (value, _lists_as_tuples(value)):
        try:
            adapter.validate_python(candidate, strict=True)
            return True
        except PydanticValidationError:
            continue
    return False


def _lists_as_tuples(value: Any) -> Any:
    # YAML writes a tuple such as blur's (low, high) sigma range as a list.
    if isinstance(value, list):
        return tuple(_lists_as_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _lists_as_tuples(v) for k, v in value.items()}
    return value


def _readable(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("collections.abc.", "").replace("typing.", "")


def check_experiment(cfg: Any) -> None:
    """Raise ValueError unless the parts of an experiment config agree with each other:
    every named modality and attack target exists, learned placeholders and unimodal heads
    get trained, sweeps name a model of the run and are unique."""
    mods = sorted(cfg.model.encoders)
    raw = list(ContextViews.input_keys) if cfg.model.views is not None else []
    inputs = mods + raw
    dropout = cfg.train.modality_dropout > 0 or any(
        r.name == "modality_dropout" for r in cfg.train.regularizers
    )
    if cfg.model.missing == "learned" and not dropout:
        raise ValueError(
            "model.missing: 'learned' placeholders are trained only when modalities go "
            "missing in training; set train.modality_dropout > 0 (or add a "
            "modality_dropout regularizer), or use missing: zeros"
        )
    if cfg.train.unimodal_weight and not cfg.model.unimodal_heads:
        raise ValueError(
            f"train.unimodal_weight: {cfg.train.unimodal_weight} needs "
            "model.unimodal_heads: true (the model has no unimodal heads to train)"
        )
    for i, reg in enumerate(cfg.train.regularizers):
        modality = (reg.model_extra or {}).get("modality")
        if modality is not None and modality not in mods:
            raise ValueError(
                f"train.regularizers.{i}.modality: {modality!r} is not a modality of the "
                f"model; expected one of {mods}"
            )
    attacks = [("train.adversarial", cfg.train.adversarial)] + [
        (f"eval.sweeps.{i}.attack", s.attack) for i, s in enumerate(cfg.eval.sweeps)
    ]
    for where, spec in attacks:
        extra = spec.model_extra or {} if spec is not None else {}
        # An adapter of a single-input library names one `target`.
        targets = extra.get("targets") or extra.get("target")
        for t in [targets] if isinstance(targets, str) else targets or []:
            if t not in inputs:
                raise ValueError(
                    f"{where}.targets: {t!r} is not an input of the model; expected {inputs}"
                )
    for i, sweep in enumerate(cfg.eval.sweeps):
        if sweep.source not in (None, cfg.name):
            raise ValueError(
                f"eval.sweeps.{i}.source: {sweep.source!r} is not a model of this run; "
                f"expected None (white-box) or {cfg.name!r}, the one model it trains"
            )
    names = [s.name for s in cfg.eval.sweeps]
    if len(set(names)) != len(names) or "clean" in names:
        raise ValueError(f"eval.sweeps: names must be unique and not 'clean', got {names}")

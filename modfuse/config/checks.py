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
from collections.abc import Callable as CallableABC
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationInfo, field_validator
from pydantic import ValidationError as PydanticValidationError

from modfuse._registry import Registry
from modfuse.devices import check_device

__all__ = [
    "COUNT_LIMITS",
    "StrictConfig",
    "admits_bool",
    "check_component",
    "check_device",
    "check_frozen_weights",
    "readable_type",
    "spec_name",
]

#: The largest value a config may give these counts of any component (a run with more would
#: not finish: AutoAttack's standard version takes 100 steps and 5,000 queries).
COUNT_LIMITS = {"steps": 100_000, "queries": 10_000_000, "restarts": 1_000, "target_classes": 1_000}

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
        raise ValueError(registry.unknown(name))
    what = f"{registry.kind} {name!r}"
    kwargs = {} if isinstance(spec, str) else {k: v for k, v in spec.items() if k != "name"}
    for key, value in kwargs.items():
        _check_finite(value, f"{what}: argument {key!r}")
        limit = COUNT_LIMITS.get(key)
        if limit is not None and isinstance(value, int) and value > limit:
            raise ValueError(
                f"{what}: argument {key!r} = {value} is more than {limit:,}; a run with that "
                "many would not finish"
            )
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
                continue  # taken through **kwargs: checked against the bases' hints below
            if not _fits(hints[key], value):
                shown = param.annotation if isinstance(param.annotation, str) else hints[key]
                raise ValueError(
                    f"{what}: argument {key!r} must be {readable_type(shown)}, got {value!r} "
                    f"({type(value).__name__})"
                )
        _check_callables(what, factory, kwargs)
    if not build:
        return None
    try:
        return registry.create(spec if isinstance(spec, str) else dict(spec))
    except (TypeError, ValueError, KeyError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        if isinstance(err, TypeError) and "unexpected keyword" in str(err):
            message = f"{message}; it takes {_accepted(factory)}"
        raise ValueError(f"{what}: {message}") from None


class StrictConfig(BaseModel):
    """A config section: unknown keys and NaN / inf refused, and no boolean where a number
    goes (pydantic reads ``epochs: true`` as 1 epoch and ``num_classes: true`` as 1 class)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        if field is not None and not admits_bool(field.annotation):
            items = value if isinstance(value, list) else [value]
            if any(isinstance(v, bool) for v in items):
                raise ValueError(
                    f"expected {readable_type(field.annotation)}, got {value!r} (a boolean)"
                )
        return value


def check_frozen_weights(where: str, spec: str | Mapping[str, Any]) -> None:
    """Refuse a frozen encoder spec without weights (random features, and only the head
    learns) unless it says ``random_ok: true``."""
    extra = spec if isinstance(spec, Mapping) else {}
    if not isinstance(extra.get("random_ok", False), bool):
        raise ValueError(f"{where}.random_ok: expected true or false, got {extra['random_ok']!r}")
    if extra.get("freeze") and extra.get("weights") is None and not extra.get("random_ok"):
        raise ValueError(
            f"{where}: frozen (freeze: true) without weights: its features would be those of "
            "random weights; give weights: FILE, or freeze: false, or random_ok: true if "
            "random features are what you want"
        )


def admits_bool(annotation: Any) -> bool:
    """Whether a field of this annotation may hold a boolean (bool, Any, or a union with
    bool)."""
    if annotation is bool or annotation is Any:
        return True
    return any(admits_bool(a) for a in typing.get_args(annotation))


def _wants_callable(hint: Any) -> bool:
    """Whether an annotation asks for a function (a Callable, or a callable Protocol)."""
    for a in typing.get_args(hint) or (hint,):
        if (typing.get_origin(a) or a) is CallableABC:
            return True
        if isinstance(a, type) and getattr(a, "_is_protocol", False) and "__call__" in vars(a):
            return True
    return False


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


def _check_callables(what: str, factory: Any, kwargs: Mapping[str, Any]) -> None:
    """Refuse a plain value (YAML gives strings) for an argument that takes a function, in
    the factory or in the bases its ``**kwargs`` reach."""
    targets = factory.__mro__[:-1] if inspect.isclass(factory) else (factory,)
    hints: dict[str, Any] = {}
    for target in targets:
        hints = {**_type_hints(target), **hints}
    for key, value in kwargs.items():
        if key in hints and _wants_callable(hints[key]) and not callable(value):
            if value is not None:
                raise ValueError(
                    f"{what}: argument {key!r} must be a Python function, got {value!r} "
                    f"({type(value).__name__}); a config cannot name a function: build the "
                    "component in Python to pass one"
                )


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


def readable_type(annotation: Any) -> str:
    """An annotation as people read it (``int``, ``int | None``)."""
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("collections.abc.", "").replace("typing.", "")

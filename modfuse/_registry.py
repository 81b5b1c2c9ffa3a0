"""One generic registry class; one instance per kind of component.

A registry maps a name to a factory (a class or a function). ``create`` turns a spec into an
object: a name, a ``{"name": ..., **kwargs}`` dict, or an object that is already built.
A name of the form ``family:variant`` (``timm:resnet18``) is resolved to the factory
registered as ``family``, called with the variant as its first argument.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

T = TypeVar("T")

Spec = str | Mapping[str, Any] | Any


class Registry(Generic[T]):
    """Names to factories for one kind of component (encoder, fusion, attack, regularizer).

    Args:
        kind: What the registry holds, used in error messages ("encoder", "fusion", ...).

    Examples:
        >>> reg = Registry("widget")
        >>> @reg.register("box")
        ... class Box:
        ...     def __init__(self, size: int = 1):
        ...         self.size = size
        >>> reg.create({"name": "box", "size": 3}).size
        3
        >>> reg.names()
        ['box']
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator that registers a factory under ``name`` and returns it unchanged.

        Raises:
            ValueError: if ``name`` is empty or already registered.
        """
        if not isinstance(name, str) or not name or ":" in name:
            raise ValueError(
                f"{self.kind} name must be a non-empty string without ':', got {name!r}"
            )

        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ValueError(
                    f"{self.kind} {name!r} is already registered "
                    f"(by {self._factories[name]!r}); pick another name"
                )
            self._factories[name] = factory
            return factory

        return decorator

    def unregister(self, name: str) -> None:
        """Remove ``name`` (for tests and interactive sessions)."""
        self._factories.pop(name, None)

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching an fnmatch ``pattern``, sorted."""
        return sorted(n for n in self._factories if fnmatch.fnmatchcase(n, pattern))

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        family, sep, variant = name.partition(":")
        return name in self._factories or bool(sep and variant and family in self._factories)

    def get(self, name: str) -> tuple[Callable[..., T], tuple[Any, ...]]:
        """The factory for ``name`` and the positional arguments a ``family:variant`` adds."""
        if name in self._factories:
            return self._factories[name], ()
        family, sep, variant = name.partition(":")
        if sep and family in self._factories and variant:
            return self._factories[family], (variant,)
        raise KeyError(
            f"unknown {self.kind} {name!r}; registered: {self.names()} "
            f"(register your own with @register_{self.kind}(name))"
        )

    def create(self, spec: Spec, **overrides: Any) -> T:
        """Build a component from a name, a ``{"name": ..., **kwargs}`` dict or an object.

        Args:
            spec: A registered name, a dict with a ``name`` key and keyword arguments, or an
                already-built object (returned as is when there are no overrides).
            **overrides: Keyword arguments that take precedence over those in ``spec``.
        """
        if isinstance(spec, str):
            name, kwargs = spec, {}
        elif isinstance(spec, Mapping):
            if "name" not in spec:
                raise KeyError(f"{self.kind} spec needs a 'name' key, got keys {sorted(spec)}")
            kwargs = {k: v for k, v in spec.items() if k != "name"}
            name = spec["name"]
        else:
            if overrides:
                raise TypeError(
                    f"cannot apply overrides {sorted(overrides)} to an already-built {self.kind}"
                )
            return spec  # type: ignore[no-any-return]
        factory, args = self.get(name)
        return factory(*args, **{**kwargs, **overrides})


ENCODERS: Registry[Any] = Registry("encoder")
FUSIONS: Registry[Any] = Registry("fusion")
ATTACKS: Registry[Any] = Registry("attack")
REGULARIZERS: Registry[Any] = Registry("regularizer")

register_encoder = ENCODERS.register
register_fusion = FUSIONS.register
register_attack = ATTACKS.register
register_regularizer = REGULARIZERS.register
list_encoders = ENCODERS.names
list_fusions = FUSIONS.names
list_attacks = ATTACKS.names
list_regularizers = REGULARIZERS.names

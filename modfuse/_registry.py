"""One generic registry class; one instance per kind of component.

A registry maps a name to a factory (a class or a function). ``create`` turns a spec into an
object: a name, a ``{"name": ..., **kwargs}`` dict, or an object that is already built.
A name of the form ``family:variant`` (``timm:resnet18``) is resolved to the factory
registered as ``family``, called with the variant as its first argument.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from modfuse.names import qualified_name

T = TypeVar("T")

Spec = str | Mapping[str, Any] | Any


@dataclass(frozen=True)
class Resolved(Generic[T]):
    """What a spec names: the factory, and the arguments the spec gives it.

    Attributes:
        name: The name as written in the spec (``"timm:resnet18"``).
        factory: The registered class or function (``TimmEncoder`` for ``"timm:resnet18"``).
        args: Positional arguments the name adds: ``("resnet18",)`` for a ``family:variant``.
        kwargs: Keyword arguments from a ``{"name": ..., **kwargs}`` spec.
    """

    name: str
    factory: Callable[..., T]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    def build(self, **overrides: Any) -> T:
        """Call the factory; ``overrides`` take precedence over the spec's keyword arguments."""
        return self.factory(*self.args, **{**self.kwargs, **overrides})


def _describe(obj: object) -> str:
    """``module.QualName`` for classes and functions (clearer than their repr in an error)."""
    named = qualified_name(obj)
    return ".".join(named) if named else repr(obj)


def _origin(obj: object) -> tuple[str, str] | None:
    """Where ``obj`` was defined: (source file, qualified name), or None if unknown.

    A module imported twice (``importlib.reload``, a notebook cell run again, one file imported
    under two module names) defines new class objects from the same source; they share this.
    """
    named = qualified_name(obj)
    if named is None or "<lambda>" in named[1]:
        return None  # every lambda of a file shares one qualname: it says nothing
    module, qualname = named
    try:
        where: str | None = os.path.realpath(inspect.getfile(obj))  # type: ignore[arg-type]
    except (TypeError, OSError):
        # A class whose module is not in sys.modules: its methods still know their file.
        methods = vars(obj).values() if isinstance(obj, type) else ()
        files = [f.__code__.co_filename for f in methods if inspect.isfunction(f)]
        where = files[0] if files else module
    return (where, qualname) if isinstance(where, str) else None


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
        >>> reg.resolve("box").factory is Box
        True
        >>> reg.names()
        ['box']
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}

    def register(
        self, name: str, *, override: bool = False
    ) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator that registers a factory under ``name`` and returns it unchanged.

        Registering the same factory again under the same name does nothing, and so does a
        new definition from the same source (a module imported twice), which replaces the old
        one so that instances match the classes the module now holds.

        Args:
            name: The name specs use; no ``':'`` (that separates ``family:variant``).
            override: Replace a different factory already registered under ``name``.

        Raises:
            ValueError: if ``name`` is empty, holds ``':'``, or is taken by another factory
                and ``override`` is False.
        """
        if not isinstance(name, str) or not name or ":" in name:
            raise ValueError(
                f"{self.kind} name must be a non-empty string without ':', got {name!r}"
            )

        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            old = self._factories.get(name)
            same = old is factory or (old is not None and _origin(old) == _origin(factory))
            if old is not None and not same and not override:
                raise ValueError(
                    f"{self.kind} {name!r} is already registered (by {_describe(old)}); "
                    f"cannot register {_describe(factory)} under it. Pick another name, or "
                    f"pass override=True to replace it"
                )
            self._factories[name] = factory
            return factory

        return decorator

    def unregister(self, name: str) -> None:
        """Remove ``name`` (for tests and interactive sessions)."""
        self._factories.pop(name, None)

    def names(self, pattern: str = "*", *, exclude: str | Iterable[str] = ()) -> list[str]:
        """Registered names matching an fnmatch ``pattern``, minus ``exclude``, sorted.

        Args:
            pattern: An fnmatch pattern (``"pgd*"``).
            exclude: A name or names to leave out.
        """
        dropped = {exclude} if isinstance(exclude, str) else set(exclude)
        return sorted(
            n for n in self._factories if fnmatch.fnmatchcase(n, pattern) and n not in dropped
        )

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        family, sep, variant = name.partition(":")
        return name in self._factories or bool(sep and variant and family in self._factories)

    def resolve(self, spec: str | Mapping[str, Any]) -> Resolved[T]:
        """The factory a name or ``{"name": ..., **kwargs}`` spec stands for, with its arguments.

        Raises:
            KeyError: the name is not registered (the message lists the registered names), or
                a dict spec has no ``name`` key.
            TypeError: ``spec`` is neither a string nor a mapping.
        """
        if isinstance(spec, str):
            name, kwargs = spec, {}
        elif isinstance(spec, Mapping):
            if "name" not in spec:
                raise KeyError(f"{self.kind} spec needs a 'name' key, got keys {sorted(spec)}")
            name = spec["name"]
            kwargs = {k: v for k, v in spec.items() if k != "name"}
        else:
            raise TypeError(
                f"a {self.kind} spec must be a name or a {{'name': ...}} dict, "
                f"got {type(spec).__name__}"
            )
        if name in self._factories:
            return Resolved(name, self._factories[name], (), kwargs)
        family, sep, variant = str(name).partition(":")
        if sep and family in self._factories and variant:
            return Resolved(name, self._factories[family], (variant,), kwargs)
        raise KeyError(self.unknown(name))

    def unknown(self, name: Any) -> str:
        """The message for an unregistered ``name``: the closest registered names (difflib),
        every registered name, and how to register one.

        Examples:
            >>> r = Registry("attack"); _ = r.register("fgsm")(lambda: None)
            >>> r.unknown("fgms")
            "unknown attack 'fgms'; did you mean 'fgsm'? registered: ['fgsm'] (...)"
        """
        close = difflib.get_close_matches(str(name), self.names(), n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        return (
            f"unknown {self.kind} {name!r}; {hint}registered: {self.names()} "
            f"(register your own with @register_{self.kind}(name))"
        )

    def create(self, spec: Spec, **overrides: Any) -> T:
        """Build a component from a name, a ``{"name": ..., **kwargs}`` dict or an object.

        Args:
            spec: A registered name, a dict with a ``name`` key and keyword arguments, or an
                already-built object (returned as is when there are no overrides).
            **overrides: Keyword arguments that take precedence over those in ``spec``.
        """
        if not isinstance(spec, str | Mapping):
            if overrides:
                raise TypeError(
                    f"cannot apply overrides {sorted(overrides)} to an already-built {self.kind}"
                )
            return spec  # type: ignore[no-any-return]
        return self.resolve(spec).build(**overrides)


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

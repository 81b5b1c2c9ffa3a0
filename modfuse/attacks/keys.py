"""Keys of perturbations for caches and resume files: everything that changes their output.

``repr(attack)`` is not a key: it leaves settings out (the loss function), truncates large
tensors and prints objects by address. A key here hashes the attack's class and every setting:
tensors by their bytes, numbers, strings and containers by their structure, and functions by
their code, so that editing a loss function in place (same name, another body) changes the key:

- a function written outside the installed libraries (a lambda, a closure, a module-level
  function of the user's or of modfuse) by its bytecode, its constants (nested functions'
  code included), the names it reads, its defaults, the contents of its closure cells and the
  globals it reads (values by value, functions by their code, modules by name), each
  described like any other setting;
- a function or class of an installed library (the standard library, site-packages: torch,
  numpy) by module, qualified name and the library's version, when that name finds the very
  same object again; a class of the user's by module and qualified name (its methods are not
  hashed: after editing an attack class in place, clear the cache).

What cannot be identified by value (a bound method, a callable object, a global holding an
object) has no key: such an attack is computed every time and never cached.
"""

from __future__ import annotations

import dis
import functools
import hashlib
import importlib
import json
import numbers
import sys
import sysconfig
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modfuse.attacks.streams import DRAW_SCHEME
from modfuse.data.hashing import tensor_digest
from modfuse.names import qualified_name
from modfuse.protocols import AttackMeta

#: Attributes that record what the last call did, not what the next call does.
BOOKKEEPING = frozenset({"last_counts"})

#: Where installed code lives: the standard library and site-packages.
LIBRARY_DIRS = tuple(
    {Path(p).resolve() for k in ("stdlib", "platstdlib", "purelib", "platlib")
     if (p := sysconfig.get_paths().get(k))}
)

#: Instructions that read a global (LOAD_NAME: in class bodies nested in a function).
GLOBAL_READS = frozenset({"LOAD_GLOBAL", "LOAD_NAME"})


class UnkeyableError(TypeError):
    """A setting cannot be identified by value, so whatever depends on it cannot be keyed."""


def _named(obj: Any) -> list[str] | None:
    """``[module, qualname]`` when importing that name gives ``obj`` itself, else None."""
    named = qualified_name(obj)
    if named is None or "<" in named[1]:
        return None  # "<lambda>", "f.<locals>.g": made at run time, not findable by name
    module, qualname = named
    try:
        found: Any = importlib.import_module(module)
        for part in qualname.split("."):
            found = vars(found)[part]  # each part is defined in the scope before it
    except (ImportError, KeyError, TypeError):
        return None
    return [module, qualname] if found is obj else None


def is_library(module_name: str) -> bool:
    """Whether ``module_name`` is installed code (the standard library, site-packages).

    A module built into the interpreter (``sys``) is; one that is not imported, or made at
    run time without a file (code run by ``exec``), is not.

    Examples:
        >>> is_library("json"), is_library("torch"), is_library("modfuse.names")
        (True, True, False)
    """
    module = sys.modules.get(module_name)
    if module is None:
        return False
    file = vars(module).get("__file__")
    if not file:
        spec = vars(module).get("__spec__")
        return spec is not None and spec.origin in ("built-in", "frozen")
    path = Path(file).resolve()
    return any(path.is_relative_to(d) for d in LIBRARY_DIRS)


def _version(module_name: str) -> str:
    """The version of the library ``module_name`` belongs to (Python's for the stdlib)."""
    top = sys.modules.get(module_name.partition(".")[0])
    version = vars(top).get("__version__") if top is not None else None
    return str(version) if version is not None else sys.version.split()[0]


def describe(value: Any, where: str) -> Any:
    """A JSON-able description of ``value`` that changes whenever ``value`` does.

    Raises:
        UnkeyableError: ``value`` (found at ``where``) cannot be identified.

    Examples:
        >>> describe({"fg": (0, 1.5)}, "ranges")
        ['dict', [['fg', ['tuple', [0, ['float', '0x1.8000000000000p+0']]]]]]
        >>> describe(lambda x: x, "f") == describe(lambda x: x, "f") != describe(lambda x: -x, "f")
        True
        >>> describe(object(), "loss_fn")
        Traceback (most recent call last):
        ...
        modfuse.attacks.keys.UnkeyableError: loss_fn = <object object at ...> cannot be ...
    """
    return _Describer().value(value, where)


class _Describer:
    """One description: functions met before in it are referred to, not described again (a
    recursive function would otherwise never end)."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.alive: list[Any] = []  # keeps every seen object alive, so no id is reused

    def value(self, value: Any, where: str) -> Any:
        if isinstance(value, np.generic):
            value = value.item()  # numpy scalars as the Python numbers they hold
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, numbers.Integral):
            return int(value)
        if isinstance(value, numbers.Real):
            return ["float", float(value).hex()]  # exact, and JSON has no NaN / inf
        if isinstance(value, complex):
            return ["complex", value.real.hex(), value.imag.hex()]
        if isinstance(value, bytes):
            return ["bytes", value.hex()]
        if value is Ellipsis:
            return ["ellipsis"]
        if isinstance(value, (tuple, list)):
            kind = "tuple" if isinstance(value, tuple) else "list"
            return [kind, [self.value(v, f"{where}[{i}]") for i, v in enumerate(value)]]
        if isinstance(value, (set, frozenset)):
            members = sorted(json.dumps(self.value(v, where)) for v in value)
            return [type(value).__name__, members]
        if isinstance(value, Mapping):
            items = sorted(value.items(), key=lambda kv: repr(kv[0]))
            return [
                "dict",
                [[self.value(k, where), self.value(v, f"{where}[{k!r}]")] for k, v in items],
            ]
        if isinstance(value, torch.Tensor):
            return ["tensor", tensor_digest([value])]
        if isinstance(value, (torch.dtype, torch.device)):
            return [type(value).__name__, str(value)]
        if isinstance(value, functools.partial):
            return [
                "partial",
                self.value(value.func, f"{where}.func"),
                self.value(value.args, f"{where}.args"),
                self.value(value.keywords, f"{where}.keywords"),
            ]
        if isinstance(value, AttackMeta):  # an attack built from attacks (an ensemble, a schedule)
            return ["attack", self.settings(value)]
        if isinstance(value, types.FunctionType):
            return self.function(value, where)
        if isinstance(value, types.ModuleType):
            return self.module(value, ())
        name = _named(value) if callable(value) else None
        if name is not None:  # a class, or a builtin function
            return ["code", *name, _version(name[0])] if is_library(name[0]) else ["code", *name]
        raise UnkeyableError(
            f"{where} = {value!r} cannot be identified by value (a bound method, callable "
            "object or other object); use a function or plain values"
        )

    def function(self, fn: types.FunctionType, where: str) -> list:
        """A library function by name and version; any other by its code and what it reads."""
        name = _named(fn)
        if name is not None and is_library(name[0]):
            return ["code", *name, _version(name[0])]
        ref = [fn.__module__, fn.__qualname__]
        if id(fn) in self.seen:
            return ["function-ref", *ref]
        self.seen.add(id(fn))
        self.alive.append(fn)
        code = fn.__code__
        cells = []
        for var, cell in zip(code.co_freevars, fn.__closure__ or ()):
            try:
                content = cell.cell_contents
            except ValueError:  # a cell not filled yet
                cells.append([var, ["empty-cell"]])
                continue
            cells.append([var, self.value(content, f"{where} (closure variable {var!r})")])
        return [
            "function",
            *ref,
            self.code(code, fn.__globals__, where),
            self.value(fn.__defaults__, f"{where}.__defaults__"),
            self.value(fn.__kwdefaults__, f"{where}.__kwdefaults__"),
            cells,
        ]

    def code(self, code: types.CodeType, env: dict[str, Any], where: str) -> list:
        """Bytecode, constants (nested code recursively), names and the globals it reads."""
        consts = [
            self.code(c, env, where) if isinstance(c, types.CodeType) else self.value(c, where)
            for c in code.co_consts
        ]
        reads = sorted({i.argval for i in dis.get_instructions(code) if i.opname in GLOBAL_READS})
        found = []
        for name in reads:
            if name not in env:
                continue  # a builtin: its name (in co_names) is what identifies it
            value = env[name]
            if isinstance(value, types.ModuleType):
                found.append([name, self.module(value, code.co_names)])
            else:
                found.append([name, self.value(value, f"{where} (global {name!r})")])
        return [
            "bytecode",
            code.co_code.hex(),
            getattr(code, "co_exceptiontable", b"").hex(),  # try / except (Python 3.11+)
            [code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount, code.co_flags],
            list(code.co_names),
            list(code.co_varnames),
            list(code.co_freevars),
            list(code.co_cellvars),
            consts,
            found,
        ]

    def module(self, module: types.ModuleType, attributes: tuple[str, ...]) -> list:
        """A library module by name and version; another by name and the functions of it
        that the code names (``helpers.f(x)`` reads ``f`` through the module)."""
        name = module.__name__
        if is_library(name):
            return ["module", name, _version(name)]
        own = vars(module)
        used = [
            [a, self.function(own[a], f"{name}.{a}")]
            for a in sorted(set(attributes))
            if isinstance(own.get(a), types.FunctionType) and own[a].__module__ == name
        ]
        return ["module", name, used]

    def settings(self, obj: Any) -> list:
        """The description of ``obj``'s class and of each attribute, bookkeeping left out."""
        cls = type(obj).__name__
        settings = [(k, v) for k, v in sorted(vars(obj).items()) if k not in BOOKKEEPING]
        return [self.value(type(obj), cls), [[k, self.value(v, f"{cls}.{k}")] for k, v in settings]]


def fingerprint(obj: Any) -> str:
    """A hash of ``obj``'s class and every attribute in ``vars(obj)`` but bookkeeping.

    Raises:
        UnkeyableError: the class or an attribute cannot be identified.

    Examples:
        >>> from modfuse.attacks import FGSM
        >>> fingerprint(FGSM(eps=0.1)) == fingerprint(FGSM(eps=0.1)) != fingerprint(FGSM(0.2))
        True
    """
    # The way random attacks draw is part of what they compute: a new scheme, new keys.
    described = [DRAW_SCHEME, _Describer().settings(obj)]
    return hashlib.sha256(json.dumps(described).encode()).hexdigest()[:24]


def perturbation_key(perturbation: Any) -> tuple[str | None, str]:
    """``(key, "")`` for a perturbation that can be keyed, ``(None, why not)`` otherwise.

    Only attacks (:class:`modfuse.protocols.AttackMeta`, as every
    :class:`modfuse.attacks.Attack` is) declare their settings (as attributes); anything else
    is not keyed.

    Examples:
        >>> from modfuse.attacks import FGSM
        >>> class Scaled:
        ...     def __call__(self, logits, labels, reduction="mean"):
        ...         return logits.sum()
        >>> key, why = perturbation_key(FGSM(loss=Scaled()))
        >>> key, why.startswith("FGSM.loss_fn = <")
        (None, True)
    """
    if not isinstance(perturbation, AttackMeta):
        return None, f"{type(perturbation).__name__} is not a modfuse Attack"
    try:
        return fingerprint(perturbation), ""
    except UnkeyableError as err:
        return None, str(err)

"""Keys of perturbations for caches and resume files: everything that changes their output.

``repr(attack)`` is not a key: it leaves settings out (the loss function), truncates large
tensors and prints objects by address. A key here hashes the attack's class and every setting:
tensors by their bytes, numbers, strings and containers by their structure, and functions or
classes by module and qualified name, only when that name finds the very same object again
(a plain module-level function or class). A lambda, a closure, a bound method or a callable
object cannot be identified that way: such an attack has no key, and is not cached.
Code is identified by name, not by its source: after editing a loss function, clear the cache.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from modfuse.data.hashing import tensor_digest
from modfuse.names import qualified_name
from modfuse.protocols import AttackMeta

#: Attributes that record what the last call did, not what the next call does.
BOOKKEEPING = frozenset({"last_counts"})


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


def describe(value: Any, where: str) -> Any:
    """A JSON-able description of ``value`` that changes whenever ``value`` does.

    Raises:
        UnkeyableError: ``value`` (found at ``where``) cannot be identified.

    Examples:
        >>> describe({"fg": (0, 1.5)}, "ranges")
        ['dict', [['fg', ['tuple', [0, ['float', '0x1.8000000000000p+0']]]]]]
        >>> describe(lambda x: x, "loss_fn")
        Traceback (most recent call last):
        ...
        modfuse.attacks.keys.UnkeyableError: loss_fn = <function <lambda> at ...> cannot be ...
    """
    if isinstance(value, np.generic):
        value = value.item()  # numpy scalars as the Python numbers they hold
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return ["float", float(value).hex()]  # exact, and JSON has no NaN / inf
    if isinstance(value, (tuple, list)):
        kind = "tuple" if isinstance(value, tuple) else "list"
        return [kind, [describe(v, f"{where}[{i}]") for i, v in enumerate(value)]]
    if isinstance(value, Mapping):
        items = sorted(value.items(), key=lambda kv: repr(kv[0]))
        return ["dict", [[describe(k, where), describe(v, f"{where}[{k!r}]")] for k, v in items]]
    if isinstance(value, torch.Tensor):
        return ["tensor", tensor_digest([value])]
    if isinstance(value, (torch.dtype, torch.device)):
        return [type(value).__name__, str(value)]
    if isinstance(value, functools.partial):
        return [
            "partial",
            describe(value.func, f"{where}.func"),
            describe(value.args, f"{where}.args"),
            describe(value.keywords, f"{where}.keywords"),
        ]
    if isinstance(value, AttackMeta):  # an attack built from attacks (an ensemble, a schedule)
        return ["attack", _settings(value)]
    name = _named(value) if callable(value) else None
    if name is not None:
        return ["code", *name]
    raise UnkeyableError(
        f"{where} = {value!r} cannot be identified by value (a lambda, closure, bound method, "
        "callable object or other object); use a module-level function or plain values"
    )


def fingerprint(obj: Any) -> str:
    """A hash of ``obj``'s class and every attribute in ``vars(obj)`` but bookkeeping.

    Raises:
        UnkeyableError: the class or an attribute cannot be identified.

    Examples:
        >>> from modfuse.attacks import FGSM
        >>> fingerprint(FGSM(eps=0.1)) == fingerprint(FGSM(eps=0.1)) != fingerprint(FGSM(0.2))
        True
    """
    return hashlib.sha256(json.dumps(_settings(obj)).encode()).hexdigest()[:24]


def _settings(obj: Any) -> list:
    """The description of ``obj``'s class and of each attribute, bookkeeping left out."""
    cls = type(obj).__name__
    settings = [(k, v) for k, v in sorted(vars(obj).items()) if k not in BOOKKEEPING]
    return [describe(type(obj), cls), [[k, describe(v, f"{cls}.{k}")] for k, v in settings]]


def perturbation_key(perturbation: Any) -> tuple[str | None, str]:
    """``(key, "")`` for a perturbation that can be keyed, ``(None, why not)`` otherwise.

    Only attacks (:class:`modfuse.protocols.AttackMeta`, as every
    :class:`modfuse.attacks.Attack` is) declare their settings (as attributes); anything else
    is not keyed.

    Examples:
        >>> from modfuse.attacks import FGSM
        >>> key, why = perturbation_key(FGSM(loss=lambda logits, y, reduction: logits.sum()))
        >>> key, why.startswith("FGSM.loss_fn = <function <lambda>")
        (None, True)
    """
    if not isinstance(perturbation, AttackMeta):
        return None, f"{type(perturbation).__name__} is not a modfuse Attack"
    try:
        return fingerprint(perturbation), ""
    except UnkeyableError as err:
        return None, str(err)

"""The import name of a class or function: ``(module, qualified name)``.

Registries and cache keys name what they hold by where it is defined. Only classes and
plain functions have a stable name; anything else (an instance, a partial) has none.

Examples:
    >>> qualified_name(qualified_name)
    ('modfuse.names', 'qualified_name')
    >>> qualified_name(3) is None
    True
"""

from __future__ import annotations

import types

NAMED = (type, types.FunctionType, types.BuiltinFunctionType, types.MethodType)


def qualified_name(obj: object) -> tuple[str, str] | None:
    """``(module, qualname)`` of a class or function, else None."""
    if not isinstance(obj, NAMED):
        return None
    module, qualname = obj.__module__, obj.__qualname__
    if not isinstance(module, str) or not isinstance(qualname, str):
        return None  # a builtin made by an extension module may have no module
    return module, qualname

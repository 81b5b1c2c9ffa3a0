"""Train/eval modes set for a piece of work and restored exactly afterwards, module by module.

``model.train(was_training)`` restores only the top-level flag: it sets every submodule to it,
so an encoder the user had put in eval mode inside a training model (a frozen backbone whose
BatchNorm statistics must not move) would come back in training mode. These context managers
record the ``training`` flag of every submodule and put each one back as it was, exceptions
included.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn


def _flags(modules: tuple[nn.Module, ...]) -> dict[int, tuple[nn.Module, bool]]:
    """Every submodule of ``modules`` (each once, shared ones included) with its flag."""
    flags: dict[int, tuple[nn.Module, bool]] = {}
    for module in modules:
        if not isinstance(module, nn.Module):
            raise TypeError(f"expected torch.nn.Module objects, got {type(module).__name__}")
        for sub in module.modules():
            flags.setdefault(id(sub), (sub, sub.training))
    return flags


@contextlib.contextmanager
def preserved_modes(*modules: nn.Module) -> Iterator[None]:
    """Leave the modes as they are for the block, and restore every submodule's afterwards.

    For work that may switch modes itself (or runs user code that does).

    Examples:
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.Dropout())
        >>> with preserved_modes(net):
        ...     _ = net.eval()
        >>> [m.training for m in net.modules()]
        [True, True, True]
    """
    flags = _flags(modules)
    try:
        yield
    finally:
        # Set the attribute, not ``train()``: ``train`` recurses, and modules that override it
        # (frozen encoders) may refuse the flag they had.
        for sub, flag in flags.values():
            sub.training = flag


@contextlib.contextmanager
def eval_mode(*modules: nn.Module) -> Iterator[None]:
    """Put ``modules`` in eval mode for the block; restore every submodule's own flag after.

    Args:
        *modules: The modules (models) to evaluate; a module shared by several is handled once.

    Raises:
        TypeError: something that is not an ``nn.Module`` was passed.

    Examples:
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)).train()
        >>> _ = net[1].eval()  # a frozen part the user put in eval mode
        >>> with eval_mode(net):
        ...     [m.training for m in net.modules()]
        [False, False, False]
        >>> [m.training for m in net.modules()]
        [True, True, False]
    """
    with preserved_modes(*modules):
        for module in modules:
            module.eval()
        yield

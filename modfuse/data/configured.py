"""The (train, test) datasets a data config names: the embedded synthetic world (written once,
then reused only when it is the one asked for), a COCO folder or CIFAR-10.

Used by ``modfuse run`` and by studies; the config is read by its attributes (``kind``,
``root``, ``n_train``, ``n_test``, ``size``, ``contexts``, ``context_purity``, ``categories``,
``image_size``, ``hide_instances``), so this module knows no schema.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from modfuse import distributed
from modfuse.model.views import ContextViews

__all__ = ["datasets_from_config"]


def datasets_from_config(
    data: Any,
    views: Mapping[str, Any] | None = None,
    seed: int = 0,
    say: Callable[[str], None] | None = None,
) -> tuple[Any, Any]:
    """(train, test) datasets for a data config.

    Args:
        data: The data config (see the module docstring for the attributes read).
        views: ``ContextViews`` settings; None: views of side ``data.size``.
        seed: The seed a synthetic world is generated with.
        say: Where to report that a synthetic world is being written.
    """
    from modfuse.data.cifar import CIFAR10Context
    from modfuse.data.coco.dataset import coco_splits

    root = Path(data.root)
    if data.kind == "cifar10":
        size = (views or {}).get("size")
        return CIFAR10Context(root, train=True, size=size), CIFAR10Context(
            root, train=False, size=size
        )
    if data.kind == "synthetic":
        from modfuse.data.synthetic import ensure_synthetic_world

        world = (data.n_train, data.n_test, data.size, data.contexts, data.context_purity, seed)
        # Rank 0 writes the world, or checks that the folder holds the one asked for
        # (world.json); the others then check it. Another world there is an error, never reused.
        if distributed.is_main():
            if say is not None and (not root.exists() or not any(root.iterdir())):
                say(f"writing the synthetic world to {root}")
            ensure_synthetic_world(root, *world)
        distributed.barrier()
        if not distributed.is_main():
            ensure_synthetic_world(root, *world)
    return coco_splits(
        root,
        categories=data.categories,
        views=ContextViews(**views) if views else ContextViews(data.size),
        image_size=data.image_size,
        hide_instances=data.hide_instances,
    )

"""What FusionModel makes of the components it is given: an encoder's feature size, whether a
registered fusion emits logits, and the JSON-able spec of each part that ``save`` writes.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from torch import nn

from modfuse.fusion.base import Fusion as BaseFusion
from modfuse.model.views import ContextViews
from modfuse.protocols import Encoder, PixelEncoder


def plain(spec: Any) -> Any:
    """A JSON-able copy of a component spec, or None for a module passed in directly."""
    if isinstance(spec, str):
        return spec
    if isinstance(spec, Mapping):
        return copy.deepcopy(dict(spec))
    return None


def encoder_spec(spec: Any, encoder: nn.Module) -> Any:
    """The encoder's spec for config.json, with the pixel normalization it resolved (so a saved
    model keeps the statistics it was built with, whatever timm's defaults become)."""
    given = plain(spec)
    norm = encoder.normalization if isinstance(encoder, PixelEncoder) else None
    if given is None or norm is None:
        return given
    return {**({"name": given} if isinstance(given, str) else given), **norm}


def out_dim(name: str, enc: Any) -> int:
    """The feature size of ``enc``, an :class:`modfuse.protocols.Encoder` module; TypeError if
    it is not one."""
    if not isinstance(enc, nn.Module) or not isinstance(enc, Encoder):
        raise TypeError(
            f"encoder for {name!r} must be an nn.Module with an int out_dim, got {enc!r}"
        )
    if not isinstance(enc.out_dim, int):
        raise TypeError(f"encoder for {name!r} has out_dim={enc.out_dim!r}; it must be an int")
    return enc.out_dim


def emits_logits(factory: Any) -> bool:
    """Whether a registered fusion class emits logits (is affine in its inputs)."""
    return isinstance(factory, type) and issubclass(factory, BaseFusion) and factory.emits_logits


def checked_arguments(encoders: Any, num_classes: Any, views: Any) -> ContextViews | None:
    """Check FusionModel's ``encoders`` and ``num_classes``; returns its views (a dict of
    ContextViews settings, as a config holds them, is built).

    Raises:
        TypeError: ``encoders`` is not a mapping, or ``views`` neither ContextViews nor a dict.
        ValueError: no encoder, or ``num_classes`` is not a positive int (a bool is not).
    """
    if not isinstance(encoders, Mapping):
        raise TypeError(
            "encoders must be a mapping of modality name to encoder (a registered name, a "
            f"spec dict or a module), e.g. {{'fg': 'small_cnn'}}; got {type(encoders).__name__}"
        )
    if not encoders:
        raise ValueError("a FusionModel needs at least one encoder, got none")
    if isinstance(views, Mapping):  # the settings, as a config holds them
        views = ContextViews(**views)
    if views is not None and not isinstance(views, ContextViews):
        raise TypeError(
            "views must be a ContextViews or a dict of its settings (e.g. {'size': 224}), "
            f"got {type(views).__name__}"
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    return views

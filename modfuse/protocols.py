"""The contracts between modfuse's parts, as typing protocols.

Code that takes "a model", "an encoder" or "an attack" asks these protocols (``isinstance``
with a runtime-checkable protocol, or a plain attribute the protocol guarantees) instead of
probing attributes one by one. A user's class satisfies a protocol by having its members; it need
not inherit from anything.

- :class:`Encoder`: one modality's tensor ``(B, ...)`` to features ``(B, out_dim)``;
  :class:`ShapedEncoder` also declares the ``input_shape`` it accepts.
- :class:`Fusion`: ``{modality: (B, in_dims[m])}`` to ``(B, out_dim)``.
- :class:`MultimodalModel`: what attacks, sweeps and caches call on a model (``FusionModel``
  and ``FeatureHead``, a model seen from its cached features).
- :class:`AttackMeta`: what reports and sanity checks read off an attack.

Examples:
    >>> from modfuse import FusionModel
    >>> from modfuse.attacks import FGSM
    >>> model = FusionModel({"a": {"name": "mlp", "in_dim": 3}}, num_classes=2)
    >>> isinstance(model, MultimodalModel), isinstance(model.encoders["a"], Encoder)
    (True, True)
    >>> isinstance(model.fusion, Fusion), isinstance(FGSM(), AttackMeta)
    (True, True)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn


@runtime_checkable
class Encoder(Protocol):
    """One modality's input ``(B, ...)`` to features ``(B, out_dim)``."""

    out_dim: int

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class ShapedEncoder(Encoder, Protocol):
    """An encoder that declares the per-sample shape it accepts, so the model can check its
    inputs: ``input_shape`` entries None are free; None as a whole means any shape."""

    input_shape: tuple[int | None, ...] | None


@runtime_checkable
class PixelEncoder(Encoder, Protocol):
    """An image encoder that normalizes [0, 1] pixels itself: ``normalization`` is the
    ``{"mean": ..., "std": ...}`` it resolved (saved with the model's config), or None."""

    normalization: dict[str, Any] | None


@runtime_checkable
class TokenEncoder(Encoder, Protocol):
    """An encoder of token ids ``(B, L)`` that can also take their embeddings ``(B, L, E)``
    (what embedding-space text attacks perturb): ``embed(ids)`` gives them."""

    vocab_size: int

    def embed(self, ids: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class ClassIndexed(Protocol):
    """A labelled dataset that names its classes: ``class_to_index[name]`` is a label."""

    class_to_index: dict[str, int]


@runtime_checkable
class Fusion(Protocol):
    """``{modality: (B, in_dims[m])}`` to ``(B, out_dim)``; ``branch(m)`` holds the parameters
    that act on modality ``m`` alone (what a per-modality weight penalty acts on)."""

    in_dims: dict[str, int]
    out_dim: int
    emits_logits: bool

    def branch(self, name: str) -> nn.Module: ...

    def __call__(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor: ...


@runtime_checkable
class MultimodalModel(Protocol):
    """What attacks, sweeps and caches call on a model.

    ``encode`` maps inputs to ``{modality: (B, D_m)}`` features and ``fuse`` features to logits
    ``(B, C)``; ``model(inputs) == fuse(encode(inputs))``. ``select`` takes the model's input
    keys out of a dataset batch; ``check_inputs`` raises on inputs the model cannot take.
    """

    modalities: list[str]
    num_classes: int
    encoders: Mapping[str, nn.Module]
    views: Any  # a front end with input_keys / output_keys (ContextViews), or None

    def input_keys(self) -> list[str]: ...

    def select(self, batch: Mapping[str, Any], raw: bool | None = None) -> dict[str, Any]: ...

    def encode(
        self, inputs: Mapping[str, torch.Tensor], validate: bool = True
    ) -> dict[str, torch.Tensor]: ...

    def fuse(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor: ...

    def check_labels(self, labels: torch.Tensor) -> None: ...

    def __call__(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor: ...


@runtime_checkable
class AttackMeta(Protocol):
    """What reports and sanity checks read off an attack (never its class name).

    ``norm``: "linf", "l2" or "none"; ``strength_param``: the argument a sweep varies (None:
    no strength); ``strength_unit``: how to print it ("linf" prints /255); ``iterative``: a
    multi-step attack (expected to beat single-step ones); ``stronger_when``: "higher" or
    "lower" strength values hurt more (an SNR in dB hurts more when lower).
    """

    targets: Sequence[str]
    norm: str
    strength_param: str | None
    strength_unit: str
    uses_gradients: bool
    queries_model: bool
    iterative: bool
    stronger_when: str

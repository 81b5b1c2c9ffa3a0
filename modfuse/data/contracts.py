"""What the data package asks of the objects it is given, as runtime-checkable protocols.

The feature cache keys an entry by the dataset, the model and the perturbation; rather than
probing their attributes one by one, it asks these protocols (``isinstance``), which a class
satisfies by having the members, without inheriting from anything:

- :class:`Fingerprinted`: a dataset that names its own content (``fingerprint()``).
- :class:`HasEncoders`: a model with an encoder per modality and views (features by identity).
- :class:`HasViews`: a dataset or model that makes fg / bg views with a :class:`ViewMaker`.
- :class:`Perturbation`: an attack as a cache sees it (:class:`modfuse.attacks.Attack` is one).
- :class:`CacheableModel`: a :class:`modfuse.protocols.MultimodalModel` with what a cache
  hashes and runs (``spec``, ``views``, ``prepare``, ``state_dict``); ``FusionModel`` is one.

Examples:
    >>> from modfuse import FusionModel
    >>> from modfuse.attacks import GaussianBlur
    >>> from modfuse.data import StackedDataset
    >>> model = FusionModel({"a": {"name": "mlp", "in_dim": 3}}, num_classes=2)
    >>> isinstance(model, CacheableModel), isinstance(GaussianBlur(), Perturbation)
    (True, True)
    >>> data = StackedDataset({"a": torch.zeros(2, 3)}, torch.tensor([0, 1]))
    >>> isinstance(data, Fingerprinted), isinstance([1, 2], Fingerprinted)
    (True, False)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from modfuse.protocols import MultimodalModel


@runtime_checkable
class Fingerprinted(Protocol):
    """A dataset whose ``fingerprint()`` changes whenever its samples do (a cache keys on it)."""

    def fingerprint(self) -> str: ...


@runtime_checkable
class HasEncoders(Protocol):
    """A model with an encoder per modality and a front end (``views``, or None): what
    :func:`modfuse.data.hashing.feature_identity` hashes to share features by identity."""

    encoders: Mapping[str, nn.Module]
    views: Any


@runtime_checkable
class ViewMaker(Protocol):
    """A front end that makes views (:class:`modfuse.ContextViews`); ``config()`` its settings."""

    def config(self) -> dict[str, Any]: ...


@runtime_checkable
class HasViews(Protocol):
    """An object (a dataset, a model) that makes its fg / bg views with ``views`` (or None)."""

    views: ViewMaker | None


@runtime_checkable
class Perturbation(Protocol):
    """A perturbation as a feature cache sees it: what it changes and what it depends on.

    ``targets``: the input keys it may change (the others come back untouched);
    ``depends_on_model``: whether its output depends on the model (a gradient or query
    attack), so a cache entry must be keyed by the whole model.
    """

    @property
    def targets(self) -> Sequence[str]: ...

    @property
    def depends_on_model(self) -> bool: ...

    def __call__(
        self, model: Any, inputs: Mapping[str, torch.Tensor], labels: torch.Tensor
    ) -> dict[str, torch.Tensor]: ...


@runtime_checkable
class CacheableModel(MultimodalModel, Protocol):
    """A model whose encoders' features a :class:`modfuse.data.FeatureCache` can store.

    ``spec``: the JSON-able description it is built from (``spec["encoders"][m]`` per
    modality, ``spec["views"]``); ``views``: its front end or None; ``prepare``: its inputs
    made into ``{modality: tensor}`` (views applied); ``state_dict``: every weight and buffer.
    """

    spec: dict[str, Any]
    views: Any

    def prepare(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]: ...

    def state_dict(self) -> Mapping[str, Any]: ...

"""FusionModel: (views) -> one encoder per modality -> fusion -> head -> logits."""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import nn

from modfuse._registry import ENCODERS, FUSIONS
from modfuse.views import ContextViews

MissingPolicy = Literal["error", "zeros", "learned"]
#: Width of the fused vector when a fusion does not emit logits itself and none is given.
DEFAULT_FUSION_DIM = 128
#: Fusion arguments the model sets itself, and where the value comes from.
_OWNED = {
    "in_dims": "the encoders' out_dim",
    "out_dim": "num_classes when the fusion emits logits, else fusion_dim; set fusion_dim=",
}


class FusionModel(nn.Module):
    """A multimodal classifier: one encoder per modality, a fusion layer and a head.

    Data flows one way: ``inputs -> views? -> encoders -> fusion -> head -> logits``. With
    ``views``, the model also takes a raw ``{"image", "mask"}`` batch and builds the ``fg`` and
    ``bg`` views itself, so an attack on ``"image"`` moves both views.

    Args:
        encoders: Modality name -> encoder: a registered name (``"small_cnn"``,
            ``"timm:resnet18"``), a ``{"name": ..., **kwargs}`` dict, or an ``nn.Module`` with
            ``out_dim``.
        fusion: A registered fusion name, a ``{"name": ..., **kwargs}`` dict, or a fusion module.
        num_classes: Number of classes.
        views: Optional front end that turns ``{"image", "mask"}`` into ``{"fg", "bg"}``.
        fusion_dim: Width of the fused vector. None lets a fusion that is affine in its inputs
            (``concat``, ``sum``) emit the logits itself, with no head (the paper's linear
            classifier on concatenated features); other fusions get ``DEFAULT_FUSION_DIM``
            and a ReLU + Linear head.
        missing: What a missing modality becomes: ``"error"`` (raise), ``"zeros"`` (a zero
            feature) or ``"learned"`` (a learned placeholder feature).
        unimodal_heads: Add one linear classifier per modality (``unimodal_logits``), so that
            foreground-only and background-only predictions come from the same object.
        validate: Check inputs (keys, shapes, batch sizes, finite values) on every call.

    Shape:
        - Input: ``{name: (B, *encoder input shape)}`` or ``{"image": (B, C, H, W),
          "mask": (B, 1, H, W)}`` with views
        - Output: ``(B, num_classes)``

    Examples:
        >>> model = FusionModel({"fg": "small_cnn", "bg": "small_cnn"}, "concat", num_classes=3)
        >>> x = {"fg": torch.rand(2, 3, 32, 32), "bg": torch.rand(2, 3, 32, 32)}
        >>> model(x).shape
        torch.Size([2, 3])
        >>> sorted(model.encode(x))
        ['bg', 'fg']
    """

    def __init__(
        self,
        encoders: Mapping[str, Any],
        fusion: Any = "concat",
        *,
        num_classes: int,
        views: ContextViews | None = None,
        fusion_dim: int | None = None,
        missing: MissingPolicy = "error",
        unimodal_heads: bool = False,
        validate: bool = True,
    ) -> None:
        super().__init__()
        if not encoders:
            raise ValueError("a FusionModel needs at least one encoder, got none")
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        if missing not in ("error", "zeros", "learned"):
            raise ValueError(f"missing must be 'error', 'zeros' or 'learned', got {missing!r}")
        if fusion_dim is not None and fusion_dim < 1:
            raise ValueError(f"fusion_dim must be a positive int or None, got {fusion_dim}")
        self.modalities = sorted(encoders)
        self.num_classes = num_classes
        self.missing = missing
        self.validate = validate
        self.views = views
        self.encoders = nn.ModuleDict()
        for m in self.modalities:
            enc = ENCODERS.create(encoders[m])
            if not isinstance(enc, nn.Module) or not isinstance(getattr(enc, "out_dim", None), int):
                raise TypeError(
                    f"encoder for {m!r} must be an nn.Module with an int out_dim, got {enc!r}"
                )
            self.encoders[m] = enc
        self.feature_dims = {m: int(self.encoders[m].out_dim) for m in self.modalities}

        if isinstance(fusion, nn.Module):
            self.fusion = fusion
        else:
            found = FUSIONS.resolve(fusion)
            emits = getattr(found.factory, "emits_logits", False) and fusion_dim is None
            width = num_classes if emits else (fusion_dim or DEFAULT_FUSION_DIM)
            used = {"in_dims": self.feature_dims, "out_dim": width}
            # The model owns these two; a user's value in the spec would be dropped unseen.
            for key in sorted(used.keys() & found.kwargs.keys()):
                if found.kwargs[key] != used[key]:
                    warnings.warn(
                        f"fusion spec sets {key}={found.kwargs[key]!r}, but FusionModel uses "
                        f"{key}={used[key]!r} ({_OWNED[key]})",
                        UserWarning,
                        stacklevel=2,
                    )
            self.fusion = found.build(**used)
        width = int(getattr(self.fusion, "out_dim", num_classes))
        emits = fusion_dim is None and getattr(self.fusion, "emits_logits", False)
        if emits and width == num_classes:
            self.head: nn.Module = nn.Identity()
        else:
            self.head = nn.Sequential(nn.ReLU(), nn.Linear(width, num_classes))

        self.placeholders = nn.ParameterDict()
        if missing == "learned":
            for m, d in self.feature_dims.items():
                self.placeholders[m] = nn.Parameter(torch.zeros(d))
        self.unimodal = nn.ModuleDict()
        if unimodal_heads:
            for m, d in self.feature_dims.items():
                self.unimodal[m] = nn.Linear(d, num_classes)

        # What save() writes to config.json; None where a component was passed as a module.
        self.spec: dict[str, Any] = {
            "encoders": {m: _encoder_spec(encoders[m], self.encoders[m]) for m in self.modalities},
            "fusion": _plain(fusion),
            "num_classes": num_classes,
            "views": views.config() if views is not None else None,
            "fusion_dim": fusion_dim,
            "missing": missing,
            "unimodal_heads": unimodal_heads,
            "validate": validate,
        }

    # ------------------------------------------------------------------ inputs
    def input_keys(self) -> list[str]:
        """The keys ``forward`` accepts: the modalities, plus ``image`` / ``mask`` with views."""
        return self.modalities + (["image", "mask"] if self.views is not None else [])

    def select(self, batch: Mapping[str, Any], raw: bool | None = None) -> dict[str, torch.Tensor]:
        """The model's input keys out of a dataset batch (which also holds labels, ids...).

        Args:
            batch: A dataset batch.
            raw: With views: True takes ``image`` and ``mask`` (the raw-image path), False the
                view keys (``fg``, ``bg``); None takes the raw path when the batch has it.
        """
        has_raw = "image" in batch and "mask" in batch
        if raw and (self.views is None or not has_raw):
            raise KeyError("raw inputs need a model with views and a batch with 'image' and 'mask'")
        if self.views is not None and has_raw and raw is not False:
            keys = ["image", "mask"] + [m for m in self.modalities if m not in ("fg", "bg")]
        else:
            keys = self.modalities
        return {k: batch[k] for k in keys if k in batch}

    def prepare(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Apply the views (if any) and check the modality tensors; returns modality -> tensor."""
        if not isinstance(inputs, Mapping):
            raise TypeError(
                f"inputs must be a dict of modality tensors, got {type(inputs).__name__}"
            )
        inputs = dict(inputs)
        if self.views is not None and ("image" in inputs or "mask" in inputs):
            if "image" not in inputs or "mask" not in inputs:
                raise KeyError("views need both 'image' and 'mask' in the inputs")
            clash = [k for k in ("fg", "bg") if k in inputs]
            if clash:
                raise KeyError(f"inputs hold both a raw image and the view {clash[0]!r}; pass one")
            image, mask = inputs.pop("image"), inputs.pop("mask")
            if self.validate:
                _check_finite("image", image)
            views = self.views(image, mask)
            # A model may use one view only (a foreground-only model with the same front end).
            inputs.update({k: v for k, v in views.items() if k in self.modalities})
        unknown = sorted(set(inputs) - set(self.modalities))
        if unknown:
            raise KeyError(
                f"unknown input {unknown[0]!r}; the model expects {self.input_keys()} "
                "(use model.select(batch) to drop labels and ids)"
            )
        if self.validate:
            self._check_shapes(inputs)
        return inputs

    def _check_shapes(self, inputs: Mapping[str, torch.Tensor]) -> None:
        batch: tuple[str, int] | None = None
        for m, x in inputs.items():
            if not isinstance(x, torch.Tensor):
                raise TypeError(f"modality {m!r} must be a Tensor, got {type(x).__name__}")
            shape = getattr(self.encoders[m], "input_shape", None)
            if shape is not None:
                ok = x.dim() == len(shape) + 1 and all(
                    s is None or s == d for s, d in zip(shape, x.shape[1:])
                )
                if not ok:
                    want = ", ".join(
                        "B" if i == 0 else str(s or "*") for i, s in enumerate((0, *shape))
                    )
                    raise ValueError(
                        f"modality {m!r} must have shape ({want}), got {tuple(x.shape)}"
                    )
            if batch is not None and x.shape[0] != batch[1]:
                raise ValueError(
                    f"batch sizes differ: {m!r} has {x.shape[0]}, {batch[0]!r} has {batch[1]}"
                )
            batch = (m, x.shape[0])
            if x.is_floating_point():
                _check_finite(m, x)

    def check_labels(self, labels: torch.Tensor) -> None:
        """Raise unless ``labels`` are int64-like class indices in ``[0, num_classes)``."""
        if not torch.is_tensor(labels) or labels.is_floating_point() or labels.dim() != 1:
            shape = tuple(labels.shape) if torch.is_tensor(labels) else type(labels).__name__
            dtype = labels.dtype if torch.is_tensor(labels) else ""
            raise ValueError(f"labels must be a 1-D integer tensor, got {dtype} {shape}")
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(
                f"labels must lie in [0, {self.num_classes}) for this model, got "
                f"[{int(labels.min())}, {int(labels.max())}]"
            )

    # ------------------------------------------------------------------ forward
    def encode(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Features of each modality present in ``inputs``: ``{name: (B, D_m)}``."""
        prepared = self.prepare(inputs)
        return {m: self.encoders[m](x) for m, x in prepared.items()}

    def complete(self, features: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Fill in missing modalities' features according to the missing-modality policy."""
        missing = [m for m in self.modalities if m not in features]
        if not missing:
            return dict(features)
        if self.missing == "error" or len(missing) == len(self.modalities):
            raise KeyError(
                f"modality {missing[0]!r} missing; the model expects {self.modalities}"
                + ("" if self.missing == "error" else " and at least one must be present")
            )
        ref = next(iter(features.values()))
        out = dict(features)
        for m in missing:
            if self.missing == "zeros":
                out[m] = ref.new_zeros(ref.shape[0], self.feature_dims[m])
            else:
                out[m] = self.placeholders[m].to(ref.dtype).expand(ref.shape[0], -1)
        return out

    def fuse(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Logits ``(B, num_classes)`` from features (possibly cached, possibly incomplete)."""
        return self.head(self.fusion(self.complete(features)))

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.fuse(self.encode(inputs))

    def unimodal_logits(self, features: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each modality's own prediction ``{name: (B, num_classes)}``; needs unimodal_heads."""
        if not len(self.unimodal):
            raise RuntimeError(
                "this model has no unimodal heads; build it with unimodal_heads=True"
            )
        return {m: self.unimodal[m](f) for m, f in features.items() if m in self.unimodal}

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | os.PathLike) -> None:
        """Write ``model.safetensors`` and ``config.json`` to ``directory`` (atomically)."""
        from modfuse.checkpoint import save_model

        save_model(self, directory)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> FusionModel:
        """Rebuild a model saved with ``save``; its outputs are bit-identical."""
        from modfuse.checkpoint import load_model

        return load_model(directory)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> FusionModel:
        """Build a model from the ``spec`` dict that ``save`` writes."""
        spec = dict(spec)
        views = spec.pop("views", None)
        return cls(views=ContextViews(**views) if views else None, **spec)


def _plain(spec: Any) -> Any:
    """A JSON-able copy of a component spec, or None for a module passed in directly."""
    if isinstance(spec, str):
        return spec
    if isinstance(spec, Mapping):
        return copy.deepcopy(dict(spec))
    return None


def _encoder_spec(spec: Any, encoder: nn.Module) -> Any:
    """The encoder's spec for config.json, with the pixel normalization it resolved (so a saved
    model keeps the statistics it was built with, whatever timm's defaults become)."""
    plain = _plain(spec)
    norm = getattr(encoder, "normalization", None)
    if plain is None or norm is None:
        return plain
    return {**({"name": plain} if isinstance(plain, str) else plain), **norm}


def _check_finite(name: str, x: torch.Tensor) -> None:
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"modality {name!r} holds {bad} NaN or inf values; inputs must be finite")


class HeadView(nn.Module):
    """A FusionModel seen from its features: inputs are ``{modality: (B, D_m)}`` features.

    Lets attacks, corruptions and regularizers work in feature space (on cached features):
    ``HeadView(model)(features) == model.fuse(features)``.

    Examples:
        >>> model = FusionModel({"a": {"name": "mlp", "in_dim": 3}}, num_classes=2)
        >>> head = HeadView(model)
        >>> feats = {"a": torch.rand(4, 128)}
        >>> torch.equal(head(feats), model.fuse(feats)), head.input_keys()
        (True, ['a'])
    """

    def __init__(self, model: FusionModel) -> None:
        super().__init__()
        self.model = model
        self.modalities = model.modalities

    def input_keys(self) -> list[str]:
        return list(self.modalities)

    def select(self, batch: Mapping[str, Any], raw: bool | None = None) -> dict[str, torch.Tensor]:
        return {m: batch[m] for m in self.modalities if m in batch}

    def encode(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return dict(inputs)

    def fuse(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.model.fuse(features)

    def check_labels(self, labels: torch.Tensor) -> None:
        self.model.check_labels(labels)

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.model.fuse(features)

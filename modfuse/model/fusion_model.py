"""FusionModel: (views) -> one encoder per modality -> fusion -> head -> logits."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import nn

from modfuse._registry import ENCODERS, FUSIONS
from modfuse.devices import model_dtype
from modfuse.model.files import read_model, write_model
from modfuse.model.parts import checked_arguments, emits_logits, encoder_spec, out_dim, plain
from modfuse.model.views import ContextViews
from modfuse.protocols import Fusion, ShapedEncoder, TokenEncoder
from modfuse.validation import check_dtype, check_finite, check_labels, check_shapes, checks_on

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
        views: ContextViews | Mapping[str, Any] | None = None,
        fusion_dim: int | None = None,
        missing: MissingPolicy = "error",
        unimodal_heads: bool = False,
        validate: bool = True,
    ) -> None:
        super().__init__()
        views = checked_arguments(encoders, num_classes, views)
        if missing not in ("error", "zeros", "learned"):
            raise ValueError(f"missing must be 'error', 'zeros' or 'learned', got {missing!r}")
        if fusion_dim is not None and fusion_dim < 1:
            raise ValueError(f"fusion_dim must be a positive int or None, got {fusion_dim}")
        self.modalities = sorted(encoders)
        self.num_classes = num_classes
        self.missing = missing
        self.validate = validate
        self.views = views
        #: The folder the weights were loaded from (:meth:`load`); None for a new model.
        self.weights_from: str | None = None
        self.encoders = nn.ModuleDict()
        self.input_shapes: dict[str, tuple[int | None, ...] | None] = {}
        self.feature_dims: dict[str, int] = {}
        for m in self.modalities:
            enc = ENCODERS.create(encoders[m])
            self.feature_dims[m] = out_dim(m, enc)
            self.encoders[m] = enc
            # Declaring input_shape is optional: without it the model checks no shape.
            self.input_shapes[m] = enc.input_shape if isinstance(enc, ShapedEncoder) else None

        if isinstance(fusion, nn.Module):
            self.fusion = fusion
        else:
            found = FUSIONS.resolve(fusion)
            emits = emits_logits(found.factory) and fusion_dim is None
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
        if not isinstance(self.fusion, Fusion):
            raise TypeError(
                "the fusion must be an nn.Module with in_dims, out_dim, emits_logits and "
                f"branch(name) (modfuse.fusion.Fusion has them), got {type(self.fusion).__name__}"
            )
        width = int(self.fusion.out_dim)
        if fusion_dim is None and self.fusion.emits_logits and width == num_classes:
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
            "encoders": {m: encoder_spec(encoders[m], self.encoders[m]) for m in self.modalities},
            "fusion": plain(fusion),
            "num_classes": num_classes,
            "views": views.config() if views is not None else None,
            "fusion_dim": fusion_dim,
            "missing": missing,
            "unimodal_heads": unimodal_heads,
            "validate": validate,
        }

    # ------------------------------------------------------------------ inputs
    def input_keys(self) -> list[str]:
        """The keys ``forward`` accepts: the modalities, plus the views' raw keys (``image``,
        ``mask``) with views."""
        return self.modalities + (list(self.views.input_keys) if self.views is not None else [])

    def select(self, batch: Mapping[str, Any], raw: bool | None = None) -> dict[str, torch.Tensor]:
        """The model's input keys out of a dataset batch (which also holds labels, ids...).

        Args:
            batch: A dataset batch.
            raw: With views: True takes the raw keys (``image`` and ``mask``), False the view
                keys (``fg``, ``bg``); None takes the raw path when the batch has it.
        """
        raw_keys = list(self.views.input_keys) if self.views is not None else []
        has_raw = bool(raw_keys) and all(k in batch for k in raw_keys)
        if raw and not has_raw:
            want = raw_keys or list(ContextViews.input_keys)
            raise KeyError(f"raw inputs need a model with views and a batch with {want}")
        if self.views is not None and has_raw and raw is not False:
            made = self.views.output_keys
            keys = raw_keys + [m for m in self.modalities if m not in made]
        else:
            keys = self.modalities
        return {k: batch[k] for k in keys if k in batch}

    def prepare(
        self, inputs: Mapping[str, torch.Tensor], validate: bool | None = None
    ) -> dict[str, torch.Tensor]:
        """Apply the views (if any) and check the modality tensors; returns modality -> tensor.

        Args:
            inputs: Modality tensors, or the views' raw keys.
            validate: Check the inputs; None: the model's ``validate`` setting. Checks are off
                inside :func:`modfuse.validation.unchecked` either way.
        """
        if not isinstance(inputs, Mapping):
            raise TypeError(
                f"inputs must be a dict of modality tensors, got {type(inputs).__name__}"
            )
        check = checks_on(self.validate if validate is None else validate)
        inputs = dict(inputs)
        if self.views is not None and any(k in inputs for k in self.views.input_keys):
            raw_keys, made = self.views.input_keys, self.views.output_keys
            if not all(k in inputs for k in raw_keys):
                raise KeyError(f"views need both {raw_keys[0]!r} and {raw_keys[1]!r} in the inputs")
            clash = [k for k in made if k in inputs]
            if clash:
                raise KeyError(f"inputs hold both a raw image and the view {clash[0]!r}; pass one")
            image, mask = (inputs.pop(k) for k in raw_keys)
            if check:
                check_finite(raw_keys[0], image)
            views = self.views(image, mask)
            # A model may use one view only (a foreground-only model with the same front end).
            inputs.update({k: v for k, v in views.items() if k in self.modalities})
        unknown = sorted(set(inputs) - set(self.modalities))
        if unknown:
            raise KeyError(
                f"unknown input {unknown[0]!r}; the model expects {self.input_keys()} "
                "(use model.select(batch) to drop labels and ids)"
            )
        if check:
            check_shapes(inputs, self.input_shapes)
            for m, x in inputs.items():
                if not isinstance(self.encoders[m], TokenEncoder):  # token ids are integers
                    check_dtype(m, x, model_dtype(self.encoders[m]))
        return inputs

    def check_labels(self, labels: torch.Tensor) -> None:
        """Raise unless ``labels`` are int64-like class indices in ``[0, num_classes)``."""
        check_labels(labels, self.num_classes)

    # ------------------------------------------------------------------ forward
    def encode(
        self, inputs: Mapping[str, torch.Tensor], validate: bool | None = None
    ) -> dict[str, torch.Tensor]:
        """Features of each modality present in ``inputs``: ``{name: (B, D_m)}``; ``validate``:
        see :meth:`prepare`."""
        prepared = self.prepare(inputs, validate)
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
        write_model(directory, self.state_dict(), self.spec, self.component_modules())

    def component_modules(self) -> list[str]:
        """The modules outside modfuse that registered this model's encoders and fusion (what
        a process must import to load it)."""
        found = set()
        named = [(ENCODERS, s) for s in self.spec["encoders"].values()]
        for registry, spec in [*named, (FUSIONS, self.spec["fusion"])]:
            try:
                module = registry.resolve(spec).factory.__module__
            except (KeyError, TypeError):
                continue  # passed as a module: save refuses it anyway
            if module.split(".")[0] != "modfuse":
                found.add(module)
        return sorted(found)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> FusionModel:
        """Rebuild a model saved with ``save``; its outputs are bit-identical."""
        model = read_model(directory, cls.from_spec)
        model.weights_from = str(directory)
        return model

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> FusionModel:
        """Build a model from the ``spec`` dict that ``save`` writes."""
        spec = dict(spec)
        views = spec.pop("views", None)
        return cls(views=ContextViews(**views) if views else None, **spec)


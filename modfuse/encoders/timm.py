"""Any timm model as a pooled feature extractor, with weights from a local file only."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import cast

import torch
from torch import nn

from modfuse._registry import register_encoder
from modfuse.encoders.base import PixelNormalize, load_encoder_weights, timm_config


def load_backbone_weights(model: nn.Module, path: str | os.PathLike) -> None:
    """Load a local checkpoint into a timm backbone built with ``num_classes=0``.

    Places365's released ResNets (``state_dict`` wrapper, ``module.`` prefix, 365-way ``fc``)
    load as they are: the classifier is dropped since the encoder has none.

    Raises:
        ValueError: when backbone weights are missing, unknown keys remain or shapes differ.
    """
    classifier = timm_config(model).get("classifier", "fc")
    prefixes = tuple(f"{c}." for c in ([classifier] if isinstance(classifier, str) else classifier))
    load_encoder_weights(model, path, "this backbone", drop_prefixes=prefixes)


@register_encoder("timm")
class TimmEncoder(nn.Module):
    """A timm model with its classifier removed: image -> pooled features.

    Registered as ``timm:<model name>``, e.g. ``timm:resnet18``. Weights come only from a local
    file (no hub download at run time): the ImageNet and Places365 ResNet-18 checkpoints used
    by the reference experiment load directly.

    Args:
        model_name: Any name ``timm.create_model`` accepts.
        weights: Path to a safetensors or ``.pth`` / ``.pth.tar`` file, or None for random.
        freeze: Keep the backbone in eval mode with no gradients (feature extractor).
        in_chans: Input channels.
        mean: Per-channel mean subtracted from the [0, 1] input pixels; default: the model's
            own ``pretrained_cfg`` mean (ImageNet's for the ResNets, which is also what the
            Places365 ResNets were trained with).
        std: Per-channel standard deviation the pixels are divided by; default: the model's.
        normalize: False feeds the pixels to the network as they come (a backbone trained on
            [0, 1] pixels).

    Inputs are always [0, 1] pixels: the normalization is the first step of ``forward``, so
    attacks, blur, clamping and eps stay in pixel units (as RobustBench's models do). The
    resolved ``mean`` / ``std`` are in ``normalization`` and saved with the model's config.

    Shape:
        - Input: ``(B, in_chans, H, W)``
        - Output: ``(B, out_dim)``

    Examples:
        >>> enc = TimmEncoder("resnet18")
        >>> enc(torch.rand(1, 3, 64, 64)).shape
        torch.Size([1, 512])
    """

    def __init__(
        self,
        model_name: str,
        weights: str | os.PathLike | None = None,
        freeze: bool = False,
        in_chans: int = 3,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        import timm

        if not timm.is_model(model_name):
            close = timm.list_models(f"*{model_name.split('.')[0][:6]}*")[:8]
            raise KeyError(f"timm has no model {model_name!r}; similar names: {close}")
        self.model = timm.create_model(
            model_name, pretrained=False, num_classes=0, in_chans=in_chans
        )
        if weights is not None:
            load_backbone_weights(self.model, weights)
        self.pixels = PixelNormalize.for_model(self.model, in_chans, mean, std, normalize)
        self.normalization = self.pixels.config() if normalize else None
        # timm models keep num_features as a plain int attribute.
        self.out_dim: int = int(cast(int, self.model.num_features))
        self.input_shape: tuple[int | None, ...] = (in_chans, None, None)
        self.frozen = freeze
        if freeze:
            self.model.requires_grad_(False)
            self.model.eval()

    def train(self, mode: bool = True) -> TimmEncoder:
        # A frozen backbone keeps its BatchNorm statistics: it stays in eval mode.
        super().train(mode and not self.frozen)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.pixels(x))

"""What encoders share: weights from a local file, pixel normalization, and freezing."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from modfuse.io.legacy_weights import extract_state_dict
from modfuse.io.tensor_files import load_tensors
from modfuse.modes import preserved_modes

#: ImageNet's per-channel pixel statistics: what torchvision's and timm's ResNets, and the
#: Places365 ResNets, were trained on.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_encoder_weights(
    module: nn.Module, path: str | os.PathLike, what: str, drop_prefixes: tuple[str, ...] = ()
) -> None:
    """Load a local checkpoint into ``module``, checking keys and shapes first.

    Accepts safetensors and ``.pth`` / ``.pth.tar`` files (read with ``weights_only=True``),
    a ``state_dict`` wrapper and a ``module.`` prefix. Keys the module lacks that start with
    one of ``drop_prefixes`` (a classifier the encoder does not have) are dropped.

    Raises:
        ValueError: keys missing or left over, or shapes that differ; the message lists a few.
    """
    state = extract_state_dict(load_tensors(path))
    own = module.state_dict()
    state = {k: v for k, v in state.items() if k in own or not k.startswith(drop_prefixes)}
    # Checkpoints from before torch 0.4.1 (the released Places365 ResNets) have no BatchNorm
    # `num_batches_tracked`: load_state_dict sets it, as for any state dict without _metadata.
    missing = sorted(k for k in set(own) - set(state) if not k.endswith(".num_batches_tracked"))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(
            f"weights in {path} do not fit {what}: {len(missing)} missing keys "
            f"(e.g. {missing[:3]}), {len(unexpected)} unexpected keys (e.g. {unexpected[:3]})"
        )
    bad = [k for k in state if state[k].shape != own[k].shape]
    if bad:
        k = bad[0]
        raise ValueError(
            f"weights in {path}: shape of {k!r} is {tuple(state[k].shape)}, "
            f"{what} expects {tuple(own[k].shape)} ({len(bad)} such keys)"
        )
    module.load_state_dict(state)


class PixelNormalize(nn.Module):
    """``(x - mean) / std`` per channel: [0, 1] pixels in, what a pretrained network expects out.

    The statistics are non-persistent buffers: they follow the model's device and dtype but
    are not part of its weights (they live in the encoder's config instead).

    Args:
        mean: Per-channel means, or None for no normalization (identity).
        std: Per-channel standard deviations (all > 0).

    Shape:
        - Input: ``(B, C, H, W)`` pixels in [0, 1]; output: the same shape.

    Examples:
        >>> norm = PixelNormalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
        >>> norm(torch.ones(1, 3, 2, 2)).unique().tolist()
        [2.0]
    """

    #: Buffers ``(1, C, 1, 1)``, registered only when enabled.
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: Sequence[float] | None, std: Sequence[float] | None) -> None:
        super().__init__()
        self.enabled = mean is not None
        self._config = (
            None
            if mean is None or std is None
            else {"mean": [float(m) for m in mean], "std": [float(s) for s in std]}
        )
        if (mean is None) != (std is None):
            raise ValueError(f"give both mean and std or neither, got mean={mean}, std={std}")
        if mean is not None and std is not None:
            finite = all(math.isfinite(float(v)) for v in (*mean, *std))
            if len(mean) != len(std) or not finite or any(not float(s) > 0 for s in std):
                raise ValueError(
                    f"mean and std need one value per channel and std > 0, got {mean}, {std}"
                )
            # (1, C, 1, 1): broadcasts over batch and pixels.
            self.register_buffer(
                "mean", torch.tensor([float(m) for m in mean]).view(1, -1, 1, 1), persistent=False
            )
            self.register_buffer(
                "std", torch.tensor([float(s) for s in std]).view(1, -1, 1, 1), persistent=False
            )

    @classmethod
    def for_model(
        cls,
        model: nn.Module,
        channels: int,
        mean: Sequence[float] | None,
        std: Sequence[float] | None,
        normalize: bool,
    ) -> PixelNormalize:
        """The normalization of a timm model: given values, else its ``pretrained_cfg``'s."""
        if not normalize:
            return cls(None, None)
        cfg: dict[str, Any] = dict(timm_config(model))
        mean = tuple(mean if mean is not None else cfg.get("mean", IMAGENET_MEAN))
        std = tuple(std if std is not None else cfg.get("std", IMAGENET_STD))
        if len(mean) != channels or len(std) != channels:
            raise ValueError(
                f"normalization has {len(mean)} means and {len(std)} stds for an input of "
                f"{channels} channels; pass mean= and std= with {channels} values each"
            )
        return cls(mean, std)

    def config(self) -> dict[str, list[float]] | None:
        """``{"mean": [...], "std": [...]}``, or None when disabled."""
        return self._config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        if x.dim() != 4 or x.shape[1] != self.mean.shape[1]:
            raise ValueError(
                f"expected pixels (B, {self.mean.shape[1]}, H, W), got {tuple(x.shape)}"
            )
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)


def is_frozen(encoder: nn.Module) -> bool:
    """Whether training cannot change an encoder's features, so they can be cached once.

    True when no parameter takes gradients and the encoder stays in eval mode when put in
    training mode (no BatchNorm statistics that move, no dropout that draws), as
    ``freeze=True`` encoders do. Its mode is restored.

    Examples:
        >>> from modfuse.encoders.small_cnn import SmallCNN
        >>> is_frozen(SmallCNN(width=4, freeze=True)), is_frozen(SmallCNN(width=4))
        (True, False)
    """
    if any(p.requires_grad for p in encoder.parameters()):
        return False
    with preserved_modes(encoder):  # every submodule's mode comes back, not just the top's
        encoder.train()
        return not any(m.training for m in encoder.modules())


class FreezableEncoder(nn.Module):
    """Base for encoders that can load local weights and be frozen.

    A frozen encoder has no gradients and stays in eval mode (its BatchNorm statistics do not
    move), even when the model around it is put in training mode.
    """

    frozen: bool = False
    #: The pixel normalization the encoder resolved (``{"mean": ..., "std": ...}``), saved
    #: with the model's config; None when it normalizes nothing.
    normalization: dict[str, Any] | None = None

    def finish(self, weights: str | os.PathLike | None, freeze: bool) -> None:
        """Load ``weights`` (a safetensors or ``.pth`` file of this encoder) and freeze."""
        if weights is not None:
            load_encoder_weights(self, weights, type(self).__name__)
        self.frozen = freeze
        if freeze:
            self.requires_grad_(False)
            self.eval()

    def train(self, mode: bool = True) -> FreezableEncoder:
        super().train(mode and not self.frozen)
        return self


def timm_config(model: nn.Module) -> dict[str, Any]:
    """A timm model's ``pretrained_cfg`` (mean, std, classifier name...); ``{}`` for a model
    built without one. timm keeps it as a plain attribute, so it is in ``vars(model)``."""
    return dict(vars(model).get("pretrained_cfg") or {})

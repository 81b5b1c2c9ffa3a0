"""Regions: the threat model "the attacker changes only these pixels" (an object's mask).

``FGSM(targets=("image",), region="mask")`` paints only the object's pixels of a raw image.
The region is an input key holding a ``(B, 1, H, W)`` mask with values in [0, 1]; a pixel is
inside when its value is above 0.5 (one meaning for every attack, blur included: a soft mask
edge is either in or out, so the budget is never spent on half-pixels). The mask key itself
is never perturbed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

#: A mask value above this is inside the region.
INSIDE = 0.5


def check_region_name(region: str | None, targets: Sequence[str]) -> None:
    """Raise unless ``region`` is None or a key name that is not among ``targets``.

    Examples:
        >>> check_region_name("mask", ("image",))
        >>> check_region_name("image", ("image",))
        Traceback (most recent call last):
        ...
        ValueError: region 'image' is also a target; the mask cannot be perturbed, got ...
    """
    if region is None:
        return
    if not isinstance(region, str):
        raise TypeError(f"region must be an input key (a str) or None, got {type(region).__name__}")
    if region in targets:
        raise ValueError(
            f"region {region!r} is also a target; the mask cannot be perturbed, "
            f"got targets={tuple(targets)}"
        )


def region_masks(
    region: str | None, targets: Sequence[str], inputs: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """One boolean ``(B, 1, H, W)`` mask per target (empty without a region), checked.

    Raises:
        KeyError: the region key is not among the inputs (names the keys present).
        ValueError: the mask is not ``(B, 1, H, W)`` matching a target ``(B, C, H, W)``
            (both shapes named), or holds values outside [0, 1].
        TypeError: the mask is not a tensor.

    Examples:
        >>> x = {"image": torch.zeros(2, 3, 4, 4), "mask": torch.zeros(2, 1, 4, 4)}
        >>> region_masks("mask", ("image",), x)["image"].shape
        torch.Size([2, 1, 4, 4])
        >>> region_masks("mask", ("image",), {"image": x["image"]})
        Traceback (most recent call last):
        ...
        KeyError: "region key 'mask' missing from the inputs; they hold ['image']"
    """
    if region is None:
        return {}
    if region not in inputs:
        raise KeyError(f"region key {region!r} missing from the inputs; they hold {sorted(inputs)}")
    m = inputs[region]
    if not torch.is_tensor(m):
        raise TypeError(f"region {region!r} must be a tensor (B, 1, H, W), got {type(m).__name__}")
    masks = {}
    for k in targets:
        x = inputs[k]
        if (
            x.dim() != 4
            or m.dim() != 4
            or m.shape[1] != 1
            or (m.shape[0], *m.shape[2:])
            != (
                x.shape[0],
                *x.shape[2:],
            )
        ):
            raise ValueError(
                f"region {region!r} has shape {tuple(m.shape)}; expected "
                f"(B, 1, H, W) matching target {k!r} of shape {tuple(x.shape)} (B, C, H, W)"
            )
        masks[k] = m
    values = m.float()
    if m.numel() and (float(values.min()) < 0 or float(values.max()) > 1):
        raise ValueError(
            f"region {region!r} must hold values in [0, 1] (> {INSIDE} is inside), got "
            f"[{float(values.min()):.4g}, {float(values.max()):.4g}]"
        )
    inside = (values > INSIDE).to(m.device)
    return {k: inside for k in masks}

"""What every fusion layer shares: sorted modality names, input checks, ``branch(name)``."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn


class Fusion(nn.Module):
    """Base class for fusion layers: ``dict[str, (B, D_m)] -> (B, out_dim)``.

    Subclasses read modalities in ``self.modalities`` order (sorted names), so the result does
    not depend on the order of the input dict, and keep the parameters that act on one modality
    alone in ``self.branches[name]`` (what ``branch(name)`` returns and a regularizer penalises).

    Args:
        in_dims: Feature size of each modality.
        out_dim: Size of the fused output.
    """

    #: True when the output is an affine function of the features (can serve as logits).
    emits_logits: bool = False

    def __init__(self, in_dims: Mapping[str, int], out_dim: int) -> None:
        super().__init__()
        if not in_dims:
            raise ValueError("a fusion needs at least one modality, got in_dims={}")
        bad = {k: v for k, v in in_dims.items() if not isinstance(v, int) or v < 1}
        if bad or not isinstance(out_dim, int) or out_dim < 1:
            raise ValueError(
                f"dims must be positive integers, got in_dims={dict(in_dims)}, out_dim={out_dim}"
            )
        self.in_dims = {k: in_dims[k] for k in sorted(in_dims)}
        self.modalities = list(self.in_dims)
        self.out_dim = out_dim
        self.branches = nn.ModuleDict()

    def branch(self, name: str) -> nn.Module:
        """The parameters that act on modality ``name`` alone."""
        if name not in self.branches:
            raise KeyError(f"modality {name!r} has no branch; the fusion has {self.modalities}")
        return self.branches[name]

    def ordered(self, features: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        """The features in sorted-name order, checked for keys and shapes."""
        missing = [m for m in self.modalities if m not in features]
        if missing:
            raise KeyError(
                f"modality {missing[0]!r} missing; the fusion expects {self.modalities}, "
                f"got {sorted(features)}"
            )
        extra = sorted(set(features) - set(self.modalities))
        if extra:
            raise KeyError(f"unknown modality {extra[0]!r}; the fusion expects {self.modalities}")
        out = []
        batch = None
        for m in self.modalities:
            x = features[m]
            if x.dim() != 2 or x.shape[1] != self.in_dims[m]:
                raise ValueError(
                    f"features of {m!r} must have shape (B, {self.in_dims[m]}), "
                    f"got {tuple(x.shape)}"
                )
            if batch is not None and x.shape[0] != batch:
                raise ValueError(
                    f"batch sizes differ across modalities: {m!r} has {x.shape[0]}, "
                    f"{self.modalities[0]!r} has {batch}"
                )
            batch = x.shape[0]
            out.append(x)
        return out

"""What encoders share: weights from a local file, and freezing."""

from __future__ import annotations

import os

from torch import nn

from modfuse.checkpoint import extract_state_dict, load_tensors


class FreezableEncoder(nn.Module):
    """Base for encoders that can load local weights and be frozen.

    A frozen encoder has no gradients and stays in eval mode (its BatchNorm statistics do not
    move), even when the model around it is put in training mode.
    """

    frozen: bool = False

    def finish(self, weights: str | os.PathLike | None, freeze: bool) -> None:
        """Load ``weights`` (a safetensors or ``.pth`` file of this encoder) and freeze."""
        if weights is not None:
            state = extract_state_dict(load_tensors(weights))
            own = self.state_dict()
            missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
            if missing or unexpected:
                raise ValueError(
                    f"weights in {weights} do not fit {type(self).__name__}: missing "
                    f"{missing[:3]}, unexpected {unexpected[:3]}"
                )
            self.load_state_dict(state)
        self.frozen = freeze
        if freeze:
            self.requires_grad_(False)
            self.eval()

    def train(self, mode: bool = True) -> FreezableEncoder:
        super().train(mode and not self.frozen)
        return self

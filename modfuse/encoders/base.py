"""What encoders share: weights from a local file, and freezing."""

from __future__ import annotations

import os

from torch import nn

from modfuse.checkpoint import extract_state_dict, load_tensors


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
    missing = sorted(set(own) - set(state))
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


class FreezableEncoder(nn.Module):
    """Base for encoders that can load local weights and be frozen.

    A frozen encoder has no gradients and stays in eval mode (its BatchNorm statistics do not
    move), even when the model around it is put in training mode.
    """

    frozen: bool = False

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

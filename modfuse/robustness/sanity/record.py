"""What a robustness sweep computed on the sanity probes' subsample (the first items of the
first batch), kept for the probes (:mod:`modfuse.robustness.sanity.probes`) instead of
computed again: which attacked items each model got right, the clean input gradient of an
attack's own pass, and the clean features of every modality.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from modfuse.attacks.context import cross_entropy
from modfuse.robustness.sanity.checks import float_targets


class SampleRecord:
    """What the sweep computed on the probes' subsample (the first ``len(labels)`` items of
    the first batch), kept for the probes instead of computing it again.

    Args:
        batch: The subsample (:func:`head` of the first batch).
        labels: Its labels ``(keep,)``.
    """

    def __init__(self, batch: dict, labels: torch.Tensor) -> None:
        self.batch, self.labels, self.keep = batch, labels, len(labels)
        #: {(model, sweep name): (keep,) bool}: right on the attacked input at the largest
        #: strength
        self.right: dict[tuple[str, str], torch.Tensor] = {}
        #: {(model, targets, input keys): {target: (keep, ...)}}: input gradients of each
        #: item's own cross-entropy loss at the clean input
        self.gradients: dict[tuple, dict[str, torch.Tensor]] = {}
        #: the sweep memo's clean features of the batch, cut to the subsample
        self.features: dict[tuple, torch.Tensor] = {}

    def note_right(self, model: str, sweep: str, right: torch.Tensor) -> None:
        """Keep which subsample items ``model`` got right under ``sweep`` (``right``: (B,))."""
        self.right[(model, sweep)] = right[: self.keep]

    def note_gradient(
        self, name: str, attack: Any, inputs: Mapping[str, Any], clean: Mapping[str, Any]
    ) -> None:
        """Keep the clean input gradient that ``attack``'s sweep left in ``clean`` (its
        ``clean_out``), where it is the gradient the probe would take: the default
        cross-entropy (mean over the batch), untargeted, with no region zeroing parts of it,
        and not in float16."""
        grads = clean.get("gradients")
        if (
            not grads
            or attack.loss_fn is not cross_entropy
            or attack.targeted
            or attack.region is not None
            # A float16 gradient of the batch-mean loss can underflow to 0 where each item's
            # own loss gradient does not: the probe then takes its own.
            or any(g.dtype == torch.float16 for g in grads.values())
        ):
            return
        targets = float_targets(attack, inputs)
        if not targets or any(t not in grads for t in targets):
            return
        n = len(next(iter(grads.values())))
        # (B, ...) gradients of the batch-mean loss, times B: each item's own loss gradient
        self.gradients[gradient_key(name, targets, inputs)] = {
            t: grads[t][: self.keep] * n for t in targets
        }

    def keep_features(self, store: Mapping[tuple, torch.Tensor]) -> None:
        """Keep the clean features in a sweep memo's ``store``, cut to the subsample."""
        self.features = {k: f[: self.keep] for k, f in store.items() if k[2] == "clean"}


def gradient_key(name: str, targets: Sequence[str], inputs: Mapping[str, Any]) -> tuple:
    """The key of a clean input gradient: model, targets and input keys."""
    return (name, tuple(targets), tuple(sorted(inputs)))


def head(batch: Mapping[str, Any], labels: torch.Tensor, samples: int) -> tuple[dict, Any]:
    """The first ``samples`` items of a batch: every per-item entry cut, others kept.

    Examples:
        >>> sub, y = head({"x": torch.zeros(8, 2), "name": "a"}, torch.arange(8), 3)
        >>> sub["x"].shape[0], sub["name"], y.tolist()
        (3, 'a', [0, 1, 2])
    """
    n = len(labels)

    def cut(v: Any) -> Any:
        per_item = (torch.is_tensor(v) and v.dim() > 0) or isinstance(v, (list, tuple))
        return v[:samples] if per_item and len(v) == n else v

    return {k: cut(v) for k, v in batch.items()}, labels[:samples]

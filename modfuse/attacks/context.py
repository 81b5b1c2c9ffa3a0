"""What an attack's ``perturb`` works with: the model's loss and gradients, ranges, region.

Split out of :mod:`modfuse.attacks.base` (which re-exports every name here) so that each file
stays small. :class:`AttackContext` is the one place where clamping to a key's valid range and
confining a perturbation to a region happen, so every attack that projects through
``ctx.clamp`` and ascends ``ctx.gradient`` is confined at every step, random starts included.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from modfuse.attacks.streams import ItemStreams
from modfuse.protocols import MultimodalModel

Range = tuple[float, float] | None


class LossFn(Protocol):
    """An attack's loss: ``(logits (B, C), labels (B,), reduction) -> loss`` (a scalar for
    ``"mean"``, ``(B,)`` for ``"none"``), as ``torch.nn.functional.cross_entropy``."""

    def __call__(
        self, logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean"
    ) -> torch.Tensor: ...


class ContextAttack(Protocol):
    """What :class:`AttackContext` and the call checks read off an attack
    (:class:`modfuse.attacks.base.Attack` has it all), so that neither imports the base."""

    targets: tuple[str, ...]
    targeted: bool
    region: str | None
    input_kind: str
    loss_fn: LossFn

    def range_of(self, key: str, x: torch.Tensor) -> Range: ...

    def item_streams(self, inputs: Mapping[str, Any], labels: torch.Tensor) -> ItemStreams: ...


#: Tolerance for "inside the declared range" (JPEG decoding and resizing round a little).
RANGE_TOLERANCE = 1e-5


def per_key(value: float | Mapping[str, float], key: str, what: str) -> float:
    """``value[key]`` for a per-key setting, ``value`` itself for a shared one."""
    if isinstance(value, Mapping):
        if key not in value:
            raise KeyError(f"{what} has no value for target {key!r}; it has {sorted(value)}")
        return float(value[key])
    return float(value)


def per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-sample ``values`` (B,) shaped to broadcast against ``like``: (B, 1, ..., 1)."""
    return values.view(-1, *([1] * (like.dim() - 1)))


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean"):
    """The default loss of every attack (a module-level function, so attacks stay keyable)."""
    return F.cross_entropy(logits, labels, reduction=reduction)


def returned_inputs(
    given: Mapping[str, Any],
    moved: Mapping[str, Any],
    targets: Sequence[str],
    changed: Mapping[str, Any],
) -> dict[str, Any]:
    """What an attack returns: ``changed`` (its targets; a target missing from it is dropped),
    and every key that is not a target as given.

    ``moved`` holds the inputs on the model's device and dtype. A key the attack leaves
    alone comes back as the caller's very object, bit-identical, unless the model needed it
    elsewhere and moving it kept every value: another device, or a dtype that holds every
    value of the given one (float32 inputs of a float64 model come back as float64, as the
    model takes them). A move that rounds (float64 inputs of a float32 model) is never
    returned: those keys come back as given.

    Examples:
        >>> x = {"fg": torch.zeros(2).double(), "bg": torch.ones(2).double()}
        >>> moved = {k: v.float() for k, v in x.items()}
        >>> out = returned_inputs(x, moved, ("fg",), {"fg": moved["fg"] + 1})
        >>> out["bg"] is x["bg"], out["fg"].dtype
        (True, torch.float32)
    """
    out: dict[str, Any] = {}
    for k, v in moved.items():
        if k in targets:
            continue
        g = given[k]
        exact = (
            torch.is_tensor(g)
            and torch.is_tensor(v)
            and torch.promote_types(g.dtype, v.dtype) == v.dtype
        )
        out[k] = v if exact else g
    return {**out, **changed}


class AttackContext:
    """What ``perturb`` may use: the model's loss and gradient on the target tensors.

    Features of modalities outside ``targets`` are computed once per call when that is exact
    (model in eval mode, targets are modality inputs rather than a raw image), or taken from
    ``fixed`` when the caller passes the features of those clean inputs.

    With a region (``attack.region``), ``masks[key]`` is a boolean ``(B, 1, H, W)`` tensor per
    target: ``gradient`` is zero outside it and ``clamp`` puts every pixel outside it back to
    the clean input, so the whole budget is spent inside the region.
    """

    def __init__(
        self,
        attack: ContextAttack,
        model: nn.Module,
        inputs: Mapping[str, torch.Tensor],
        labels: torch.Tensor,
        generator: torch.Generator | None,
        masks: Mapping[str, torch.Tensor] | None = None,
        fixed: Mapping[str, torch.Tensor] | None = None,
    ) -> None:
        self.attack = attack
        self.model = model
        self.inputs = inputs
        self.labels = labels
        self.generator = generator
        self._items: ItemStreams | None = None
        self.masks = dict(masks or {})
        self.targets = attack.targets
        self.ranges = {k: attack.range_of(k, inputs[k]) for k in attack.targets}
        self.forward_count = 0
        self.backward_count = 0
        # A dict to fill with the logits (and target features) of the next forward pass, set by
        # an attack whose next pass is at the clean input (FGSM's gradient), for a caller that
        # would otherwise run that clean forward pass again.
        self.clean_out: dict | None = None
        rest = {k: v for k, v in inputs.items() if k not in self.targets}
        # The model as encode + fuse when the untouched modalities' features can be computed
        # once (None: the whole model runs on every call); they are encoded on the first
        # forward pass, so an attack that never calls the model (blur, noise) costs no encoder
        # pass.
        self.split_model: MultimodalModel | None = None
        if (
            isinstance(model, MultimodalModel)
            and not model.training
            and set(self.targets) <= set(model.modalities)
            and set(rest) <= set(model.modalities)
        ):
            self.split_model = model
        self._fixed: dict[str, torch.Tensor] | None = None
        if self.split_model is not None and fixed is not None and set(rest) <= set(fixed):
            # The caller already has these features (a sweep's clean pass of this batch).
            self._fixed = {k: fixed[k] for k in rest}
        self.rest = rest

    @property
    def items(self) -> ItemStreams:
        """Random streams of this call, one per item (:meth:`Attack.item_streams`), made on
        first use: what an item draws depends on the attack's seed and the item alone, never
        on the other items of the batch. Built-in attacks draw every random number here;
        ``generator`` (one for the batch) is kept for attacks written against it."""
        if self._items is None:
            self._items = self.attack.item_streams(self.inputs, self.labels)
        return self._items

    @property
    def fixed(self) -> dict[str, torch.Tensor] | None:
        """Features ``{modality: (B, D)}`` of the untouched modalities, or None where the
        whole model must run on every call (training mode, raw-image targets)."""
        if self.split_model is None:
            return None
        if self._fixed is None:
            with torch.no_grad():
                self._fixed = self.split_model.encode(self.rest) if self.rest else {}
        return self._fixed

    def logits(self, x: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The model's logits with the target tensors replaced by ``x``."""
        self.forward_count += 1
        feats: dict[str, torch.Tensor] = {}
        fixed = self.fixed
        if self.split_model is not None and fixed is not None:
            feats = self.split_model.encode(x)  # {modality: (B, D_m)}
            out = self.split_model.fuse({**fixed, **feats})
        else:
            out = self.model({**self.rest, **x})
        if self.clean_out is not None:
            self.clean_out.update(
                logits=out.detach(), features={k: f.detach() for k, f in feats.items()}
            )
            self.clean_out = None  # only that one pass is at the clean input
        return out

    def loss(self, x: Mapping[str, torch.Tensor], reduction: str = "mean") -> torch.Tensor:
        """The loss the attack ascends (negated for targeted attacks)."""
        loss = self.attack.loss_fn(self.logits(x), self.labels, reduction=reduction)
        return -loss if self.attack.targeted else loss

    def gradient(self, x: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Gradient of ``loss`` with respect to each target tensor (ascent direction).

        Item ``i``'s rows are the gradient of item ``i``'s own loss (the per-item losses are
        summed, not averaged): neither their size nor their sign depends on the batch size
        (a batch mean can underflow to 0 where an item's own gradient does not). Zero outside
        the region, if any: an L2 step normalised by this gradient's norm is then a step of
        the full size inside the region.
        """
        leaves = {k: v.detach().requires_grad_(True) for k, v in x.items()}
        with torch.enable_grad():
            loss = self.loss(leaves, reduction="none").sum()
            self.backward_count += 1
            grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
        return self.confine(
            {
                k: (g if g is not None else torch.zeros_like(leaves[k]))
                for k, g in zip(leaves, grads)
            }
        )

    def confine(self, d: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Directions (gradients, random starts) per target, zeroed outside the region."""
        return {
            k: torch.where(self.masks[k], v, torch.zeros_like(v)) if k in self.masks else v
            for k, v in d.items()
        }

    def clamp(self, key: str, x: torch.Tensor) -> torch.Tensor:
        """``x`` clamped to the valid range of ``key``, and equal to the input outside the region.

        A no-op for unbounded keys without a region.
        """
        r = self.ranges[key]
        x = x if r is None else torch.clamp(x, min=r[0], max=r[1])
        if key in self.masks:
            # torch.where, not x0 + (x - x0) * m: pixels outside stay bit-identical.
            x = torch.where(self.masks[key], x, self.inputs[key])
        return x

    def predictions(self, x: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The model's predicted classes with the target tensors replaced by ``x``."""
        with torch.no_grad():
            return self.logits(x).argmax(1)

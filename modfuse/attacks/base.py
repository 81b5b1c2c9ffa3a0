"""The Attack base class: everything an attack on named modalities needs but its one idea.

A subclass writes ``perturb(ctx, x) -> x'`` over the target tensors only. The base class owns:
checking the inputs, the model's train/eval mode (every submodule's flag saved and restored),
cloning and detaching, gradients taken with ``torch.autograd.grad`` (parameters' ``.grad``
never touched), clamping to each key's valid range and confining to a region, the random
streams (one per item, so an item's draws do not depend on its batch), the loss and targeted
mode, and caching the features of modalities that are not attacked. Each attack also states
its threat model as metadata (``norm``, ``strength_unit``, ``iterative``, ``stronger_when``)
that reports and sanity checks read instead of class names.
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from modfuse.attacks.checks import check_call, check_linf_radius, check_strength
from modfuse.attacks.context import (
    RANGE_TOLERANCE,
    AttackContext,
    LossFn,
    Range,
    cross_entropy,
    per_key,
    per_sample,
    returned_inputs,
)
from modfuse.attacks.keys import perturbation_key
from modfuse.attacks.region import check_region_name, region_masks
from modfuse.attacks.streams import ItemStreams
from modfuse.devices import model_device, to_model
from modfuse.modes import eval_mode, preserved_modes
from modfuse.validation import unchecked

__all__ = [
    "NORMS",
    "RANGE_TOLERANCE",
    "STRENGTH_UNITS",
    "Attack",
    "AttackContext",
    "ItemStreams",
    "LossFn",
    "Range",
    "per_key",
    "per_sample",
    "returned_inputs",
]

#: Values of :attr:`Attack.norm`.
NORMS = ("linf", "l2", "none")
#: Values of :attr:`Attack.strength_unit`.
STRENGTH_UNITS = ("linf", "l2", "sigma", "std", "snr_db", "rate", "none")


class Attack:
    """Base class: built with its settings, called as ``attack(model, inputs, labels)``.

    Args:
        targets: Input keys the attack may change; every other key comes back as the very same
            tensor (bit-identical, never recomputed).
        ranges: Valid range per key, e.g. ``{"fg": (0, 1), "text": None}``. Keys not named get
            ``(0, 1)`` when they are images (4-D) and no bound otherwise.
        loss: ``loss(logits, labels, reduction=...)``; cross-entropy by default. A function
            (lambdas and closures included) is keyed by its code, so the attack stays
            cacheable; a callable object, a bound method or a function reading a global object
            cannot be keyed, so results under it are not cached.
        targeted: Move towards ``labels`` (the target classes) instead of away from them.
        seed: Seed of the random parameters. Each item draws from its own generator, seeded
            by this seed, the attack's class name and the item's own tensors and label
            (:mod:`modfuse.attacks.streams`), so an item's result does not depend on the
            other items of its batch; None: that seed is drawn from torch's global RNG.
        model_mode: ``"eval"`` runs the model in eval mode during the attack (then restores
            its mode), ``"keep"`` leaves it as it is.
        region: Name of an input key holding a ``(B, 1, H, W)`` mask (values in [0, 1], > 0.5
            inside) of the targets' size: the perturbation is confined to it, at every step of
            an iterative attack, and every pixel outside comes back bit-identical
            (``targets=("image",), region="mask"`` paints only the object of a raw image; see
            :mod:`modfuse.attacks.region`). The mask itself is never perturbed.

    Examples:
        >>> import torch
        >>> from modfuse import FusionModel
        >>> from modfuse.attacks import FGSM
        >>> model = FusionModel({"fg": "small_cnn", "bg": "small_cnn"}, num_classes=3)
        >>> x = {"fg": torch.rand(2, 3, 16, 16), "bg": torch.rand(2, 3, 16, 16)}
        >>> adv = FGSM(eps=8 / 255, targets=("fg",))(model, x, torch.tensor([0, 1]))
        >>> adv["bg"] is x["bg"], float((adv["fg"] - x["fg"]).abs().max()) <= 8 / 255 + 1e-6
        (True, True)
    """

    #: Name of the constructor argument that sets the attack's strength (for sweeps).
    strength_param: str | None = None
    #: Whether ``perturb`` needs gradients of the model.
    uses_gradients: bool = False
    #: Whether the result depends on the model at all: gradient attacks and query attacks
    #: (Square) do; corruptions (blur, noise, drop) do not, so a sweep applies them once for
    #: every model and a cache keys them without the model.
    queries_model: bool = False
    #: What the targets hold: "real" values (images, audio, features), "integer" ids (tokens),
    #: or "any" (an attack that only removes inputs).
    input_kind: str = "real"
    #: The largest valid strength (a rate is at most 1); the smallest is always 0.
    strength_max: float = math.inf
    #: The threat model's norm: "linf", "l2", or "none" (a corruption, a dropped input).
    #: Reports and sanity checks choose their checks by this, never by class names.
    norm: str = "none"
    #: How to read the strength value: "linf" (L-inf radius in input units; for [0, 1] images
    #: reports print it as k/255), "l2" (L2 radius), "sigma" (blur sigma in pixels), "std"
    #: (noise standard deviation), "snr_db" (signal-to-noise ratio in dB), "rate" (fraction
    #: of tokens), "none" (no strength).
    strength_unit: str = "none"
    #: A multi-step attack that should be at least as strong as a single-step one of the same
    #: norm at the same strength (PGD, APGD, Square, Ensemble; not FGSM).
    iterative: bool = False
    #: Which way the perturbation grows with the strength value: "higher" (eps, sigma, std,
    #: rate), or "lower" (a signal-to-noise ratio: more dB is less noise). Checks such as
    #: "accuracy falls as the strength rises" read the strength axis this way.
    stronger_when: str = "higher"

    def __init__(
        self,
        targets: Sequence[str] = ("fg",),
        *,
        ranges: Mapping[str, Range] | None = None,
        loss: LossFn | None = None,
        targeted: bool = False,
        seed: int | None = None,
        model_mode: str = "eval",
        region: str | None = None,
    ) -> None:
        if isinstance(targets, str):
            targets = (targets,)
        if not targets:
            raise ValueError("an attack needs at least one target key, got none")
        if model_mode not in ("eval", "keep"):
            raise ValueError(f"model_mode must be 'eval' or 'keep', got {model_mode!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
            raise ValueError(f"seed must be an integer or None, got {seed!r}")
        self.targets = tuple(targets)
        check_region_name(region, self.targets)
        self.region = region
        self.ranges = {}
        for k, r in (ranges or {}).items():
            if r is not None and not (len(r) == 2 and r[0] < r[1]):
                raise ValueError(f"range of {k!r} must be (low, high) with low < high, got {r}")
            # A config's [low, high] list is the same range as a (low, high) tuple.
            self.ranges[k] = None if r is None else (float(r[0]), float(r[1]))
        self.loss_fn = loss or cross_entropy
        self.targeted = targeted
        self.seed = seed
        self.model_mode = model_mode

    # -------------------------------------------------------------- subclass API
    def perturb(self, ctx: AttackContext, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Return perturbed copies of the target tensors ``x`` (subclasses write this)."""
        raise NotImplementedError

    # -------------------------------------------------------------- helpers
    def range_of(self, key: str, x: torch.Tensor) -> Range:
        """The valid range of input ``key``: declared, else (0, 1) for 4-D images, else none."""
        if key in self.ranges:
            return self.ranges[key]
        return (0.0, 1.0) if x.dim() == 4 else None

    def with_strength(self, value: Any) -> Attack:
        """A copy of this attack with its strength (eps, sigma, std...) set to ``value``."""
        if self.strength_param is None:
            raise TypeError(f"{type(self).__name__} has no strength to sweep")
        self.check_strength_value(value)
        other = copy.copy(self)
        setattr(other, self.strength_param, value)
        return other

    def check_strength_value(self, value: Any) -> None:
        """Raise unless ``value`` is a valid strength (finite, in ``[0, strength_max]``).

        An L-inf radius (``strength_unit == "linf"``) must also fit each target's range: at
        most 1 on [0, 1] pixels (a target without a declared range is taken as pixels), at
        most the width of a declared range, unbounded where the range is declared None.
        """
        what = self.strength_param or "strength"
        check_strength(value, what, self.strength_max)
        if self.strength_unit == "linf":
            pixels = (0.0, 1.0)
            check_linf_radius(value, what, {k: self.ranges.get(k, pixels) for k in self.targets})

    def sweep(
        self,
        model: nn.Module,
        inputs: Mapping[str, torch.Tensor],
        labels: torch.Tensor,
        strengths: Sequence[float],
    ) -> list[dict[str, torch.Tensor]]:
        """The attacked inputs at each strength. Subclasses may share work across strengths.

        An attack without a strength (``DropModality``) gives the same result at every point.
        """
        if self.strength_param is None:
            return [self(model, inputs, labels)] * len(strengths)
        return [self.with_strength(s)(model, inputs, labels) for s in strengths]

    def generator(self) -> torch.Generator | None:
        """A fresh generator for one call (None: torch's global RNG)."""
        return None if self.seed is None else torch.Generator().manual_seed(self.seed)

    def item_streams(self, inputs: Mapping[str, Any], labels: torch.Tensor) -> ItemStreams:
        """One random stream per item of a call (``ctx.items``), from the seed, the class
        name and each item's own tensors and label (see :mod:`modfuse.attacks.streams`)."""
        seed = self.seed if self.seed is not None else int(torch.randint(0, 2**62, ()))
        return ItemStreams.of(seed, type(self).__name__, inputs, labels)

    # -------------------------------------------------------------- the call
    def run(
        self,
        model: nn.Module,
        inputs: Mapping[str, torch.Tensor],
        labels: torch.Tensor,
        work: Callable[[AttackContext, dict[str, torch.Tensor]], Any],
        fixed: Mapping[str, torch.Tensor] | None = None,
    ) -> Any:
        """Check the inputs, set the model's mode, call ``work(ctx, x)``, restore the mode.

        ``x`` holds detached clones of the target tensors. ``__call__`` runs ``perturb`` this
        way; subclasses use it for variants such as a sweep over strengths. ``fixed``: features
        of the untouched modalities' inputs, if the caller has them (see AttackContext).
        """
        inputs = to_model(inputs, model)
        if torch.is_tensor(labels):
            labels = labels.to(model_device(model))
        check_call(self, model, inputs, labels)
        masks = region_masks(self.region, self.targets, inputs)
        # Every submodule's mode comes back as it was (a frozen encoder the user put in eval
        # mode inside a training model stays in eval mode), exceptions included.
        modes = eval_mode(model) if self.model_mode == "eval" else preserved_modes(model)
        # The inputs were checked above, once: the model's per-call checks are skipped inside
        # the attack's loop (for this call only; the caller's model is not changed).
        with modes, unchecked():
            ctx = AttackContext(self, model, inputs, labels, self.generator(), masks, fixed)
            x = {k: inputs[k].detach().clone() for k in self.targets}
            result = work(ctx, x)
        # Work done by the last call, for tests and benchmarks that count model passes.
        self.last_counts = {"forward": ctx.forward_count, "backward": ctx.backward_count}
        return result

    def __call__(
        self, model: nn.Module, inputs: Mapping[str, torch.Tensor], labels: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Attack ``inputs`` (a dict of tensors) against ``model``; returns a new dict."""

        def perturb_and_clamp(ctx: AttackContext, x: dict[str, torch.Tensor]) -> dict:
            adv = self.perturb(ctx, x)
            # A target missing from adv is a dropped modality; keys that are not targets come
            # back as the caller's tensors (see returned_inputs).
            changed = {k: ctx.clamp(k, adv[k].detach()) for k in self.targets if k in adv}
            return returned_inputs(inputs, ctx.inputs, self.targets, changed)

        return self.run(model, inputs, labels, perturb_and_clamp)

    @property
    def depends_on_model(self) -> bool:
        """True when the perturbed inputs depend on the model (gradients or queries)."""
        return self.uses_gradients or self.queries_model

    def fingerprint(self) -> str | None:
        """A key of everything that changes this attack's output, or None if it has none.

        Hashes the class and every setting in ``vars(self)``: tensors by bytes, numbers and
        containers by value, the loss and other functions as :mod:`modfuse.attacks.keys`
        describes them. A setting that cannot be identified by value (a callable object) gives
        the attack no key: caches and resume files then recompute rather than risk a wrong hit.

        Examples:
            >>> from modfuse.attacks import FGSM
            >>> a, b = FGSM(eps=0.1, seed=1), FGSM(eps=0.1, seed=2)
            >>> a.fingerprint() == FGSM(eps=0.1, seed=1).fingerprint() != b.fingerprint()
            True
            >>> class Summed:  # a callable object: nothing to identify it by
            ...     def __call__(self, logits, y, reduction="mean"):
            ...         return logits.sum()
            >>> print(FGSM(loss=Summed()).fingerprint())
            None
        """
        return perturbation_key(self)[0]

    def __repr__(self) -> str:
        fields = {k: v for k, v in vars(self).items() if k not in ("loss_fn", "last_counts")}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in fields.items())})"

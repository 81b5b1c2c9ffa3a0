"""The Attack base class: everything an attack on named modalities needs but its one idea.

A subclass writes ``perturb(ctx, x) -> x'`` over the target tensors only. The base class owns:
checking the inputs, the model's train/eval mode (every submodule's flag saved and restored),
cloning and detaching,
gradients taken with ``torch.autograd.grad`` (parameters' ``.grad`` never touched), clamping to
each key's valid range, the random generator (random parameters drawn once per call), the
loss and targeted mode, and caching the features of modalities that are not attacked.
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from modfuse.attacks.checks import check_strength
from modfuse.attacks.keys import perturbation_key
from modfuse.devices import model_device, to_model
from modfuse.modes import eval_mode, preserved_modes

Range = tuple[float, float] | None
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
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


class AttackContext:
    """What ``perturb`` may use: the model's loss and gradient on the target tensors.

    Features of modalities outside ``targets`` are computed once per call when that is exact
    (model in eval mode, targets are modality inputs rather than a raw image).
    """

    def __init__(
        self,
        attack: Attack,
        model: nn.Module,
        inputs: Mapping[str, torch.Tensor],
        labels: torch.Tensor,
        generator: torch.Generator | None,
    ) -> None:
        self.attack = attack
        self.model = model
        self.inputs = inputs
        self.labels = labels
        self.generator = generator
        self.targets = attack.targets
        self.ranges = {k: attack.range_of(k, inputs[k]) for k in attack.targets}
        self.forward_count = 0
        self.backward_count = 0
        rest = {k: v for k, v in inputs.items() if k not in self.targets}
        modalities = set(getattr(model, "modalities", []))
        self.fixed: dict[str, torch.Tensor] | None = None
        if (
            hasattr(model, "encode")
            and not model.training
            and set(self.targets) <= modalities
            and set(rest) <= modalities
        ):
            with torch.no_grad():
                self.fixed = model.encode(rest) if rest else {}
        self.rest = rest

    def logits(self, x: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The model's logits with the target tensors replaced by ``x``."""
        self.forward_count += 1
        if self.fixed is not None:
            return self.model.fuse({**self.fixed, **self.model.encode(x)})
        return self.model({**self.rest, **x})

    def loss(self, x: Mapping[str, torch.Tensor], reduction: str = "mean") -> torch.Tensor:
        """The loss the attack ascends (negated for targeted attacks)."""
        loss = self.attack.loss_fn(self.logits(x), self.labels, reduction=reduction)
        return -loss if self.attack.targeted else loss

    def gradient(self, x: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Gradient of ``loss`` with respect to each target tensor (ascent direction)."""
        leaves = {k: v.detach().requires_grad_(True) for k, v in x.items()}
        with torch.enable_grad():
            loss = self.loss(leaves)
            self.backward_count += 1
            grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
        return {
            k: (g if g is not None else torch.zeros_like(leaves[k])) for k, g in zip(leaves, grads)
        }

    def clamp(self, key: str, x: torch.Tensor) -> torch.Tensor:
        """``x`` clamped to the valid range of ``key`` (no-op for unbounded keys)."""
        r = self.ranges[key]
        return x if r is None else torch.clamp(x, min=r[0], max=r[1])

    def predictions(self, x: Mapping[str, torch.Tensor]) -> torch.Tensor:
        with torch.no_grad():
            return self.logits(x).argmax(1)


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean"):
    return F.cross_entropy(logits, labels, reduction=reduction)


class Attack:
    """Base class: built with its settings, called as ``attack(model, inputs, labels)``.

    Args:
        targets: Input keys the attack may change; every other key comes back as the very same
            tensor (bit-identical, never recomputed).
        ranges: Valid range per key, e.g. ``{"fg": (0, 1), "text": None}``. Keys not named get
            ``(0, 1)`` when they are images (4-D) and no bound otherwise.
        loss: ``loss(logits, labels, reduction=...)``; cross-entropy by default. A module-level
            function (or a ``functools.partial`` of one) keeps the attack cacheable; a lambda,
            closure or callable object cannot be keyed, so results under it are not cached.
        targeted: Move towards ``labels`` (the target classes) instead of away from them.
        seed: Seed for the random parameters, drawn once per call; None uses torch's global RNG.
        model_mode: ``"eval"`` runs the model in eval mode during the attack (then restores
            its mode), ``"keep"`` leaves it as it is.

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

    def __init__(
        self,
        targets: Sequence[str] = ("fg",),
        *,
        ranges: Mapping[str, Range] | None = None,
        loss: LossFn | None = None,
        targeted: bool = False,
        seed: int | None = None,
        model_mode: str = "eval",
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
        self.ranges = dict(ranges or {})
        for k, r in self.ranges.items():
            if r is not None and not (len(r) == 2 and r[0] < r[1]):
                raise ValueError(f"range of {k!r} must be (low, high) with low < high, got {r}")
        self.loss_fn = loss or _cross_entropy
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
        check_strength(value, self.strength_param, self.strength_max)
        other = copy.copy(self)
        setattr(other, self.strength_param, value)
        return other

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

    def _check(self, model: nn.Module, inputs: Mapping[str, torch.Tensor], labels: Any) -> None:
        if not isinstance(inputs, Mapping):
            raise TypeError(f"inputs must be a dict of tensors, got {type(inputs).__name__}")
        accepted = model.input_keys() if hasattr(model, "input_keys") else list(inputs)
        for k in self.targets:
            if k not in accepted:
                raise KeyError(
                    f"target {k!r} is not an input of the model; it takes {sorted(accepted)}"
                )
            if k not in inputs:
                raise KeyError(f"target {k!r} missing from the inputs; got {sorted(inputs)}")
        for k, v in inputs.items():
            if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all()):
                raise ValueError(f"input {k!r} holds NaN or inf values")
        for k in self.targets:
            x = inputs[k]
            if self.input_kind == "any":
                continue
            if self.input_kind == "integer":
                if not torch.is_tensor(x) or x.is_floating_point() or x.is_complex():
                    raise TypeError(f"target {k!r} must be an integer tensor (token ids)")
                continue
            if not torch.is_tensor(x) or not x.is_floating_point():
                raise TypeError(f"target {k!r} must be a floating-point tensor, got {type(x)}")
            r = self.range_of(k, x)
            if r is not None and x.numel():
                lo, hi = float(x.min()), float(x.max())
                if lo < r[0] - RANGE_TOLERANCE or hi > r[1] + RANGE_TOLERANCE:
                    raise ValueError(
                        f"target {k!r} has values in [{lo:.4g}, {hi:.4g}], outside its declared "
                        f"range {r}; scale the input or pass ranges={{{k!r}: (low, high)}}"
                    )
        if hasattr(model, "check_labels"):
            model.check_labels(labels)
        batch = inputs[self.targets[0]].shape[0]
        if not torch.is_tensor(labels) or labels.shape != (batch,):
            shape = tuple(labels.shape) if torch.is_tensor(labels) else type(labels).__name__
            raise ValueError(f"labels must be a tensor of shape ({batch},), got {shape}")

    def generator(self) -> torch.Generator | None:
        """A fresh generator for one call (None: torch's global RNG)."""
        return None if self.seed is None else torch.Generator().manual_seed(self.seed)

    # -------------------------------------------------------------- the call
    def run(
        self,
        model: nn.Module,
        inputs: Mapping[str, torch.Tensor],
        labels: torch.Tensor,
        work: Callable[[AttackContext, dict[str, torch.Tensor]], Any],
    ) -> Any:
        """Check the inputs, set the model's mode, call ``work(ctx, x)``, restore the mode.

        ``x`` holds detached clones of the target tensors. ``__call__`` runs ``perturb`` this
        way; subclasses use it for variants such as a sweep over strengths.
        """
        inputs = to_model(inputs, model)
        if torch.is_tensor(labels):
            labels = labels.to(model_device(model))
        self._check(model, inputs, labels)
        validate = getattr(model, "validate", None)
        # Every submodule's mode comes back as it was (a frozen encoder the user put in eval
        # mode inside a training model stays in eval mode), exceptions included.
        modes = eval_mode(model) if self.model_mode == "eval" else preserved_modes(model)
        with modes:
            try:
                ctx = AttackContext(self, model, inputs, labels, self.generator())
                x = {k: inputs[k].detach().clone() for k in self.targets}
                if validate:
                    # The inputs were checked above (and by the model, once, in the context):
                    # skip the model's per-call checks inside the attack's loop.
                    model.validate = False
                result = work(ctx, x)
            finally:
                if validate is not None:
                    model.validate = validate
        # Work done by the last call, for tests and benchmarks that count model passes.
        self.last_counts = {"forward": ctx.forward_count, "backward": ctx.backward_count}
        return result

    def __call__(
        self, model: nn.Module, inputs: Mapping[str, torch.Tensor], labels: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Attack ``inputs`` (a dict of tensors) against ``model``; returns a new dict."""

        def perturb_and_clamp(ctx: AttackContext, x: dict[str, torch.Tensor]) -> dict:
            adv = self.perturb(ctx, x)
            out = dict(ctx.inputs)  # on the model's device
            for k in self.targets:
                if k in adv:
                    out[k] = ctx.clamp(k, adv[k].detach())
                else:
                    out.pop(k)  # a dropped modality
            return out

        return self.run(model, inputs, labels, perturb_and_clamp)

    @property
    def depends_on_model(self) -> bool:
        """True when the perturbed inputs depend on the model (gradients or queries)."""
        return self.uses_gradients or self.queries_model

    def fingerprint(self) -> str | None:
        """A key of everything that changes this attack's output, or None if it has none.

        Hashes the class (module and qualified name) and every setting in ``vars(self)``:
        tensors by bytes, numbers and containers by value, the loss and other functions by
        module and qualified name. A lambda, closure, bound method or callable object among
        the settings cannot be identified: the attack then has no key, and caches and resume
        files recompute rather than risk a wrong hit (see :mod:`modfuse.attacks.keys`).

        Examples:
            >>> from modfuse.attacks import FGSM
            >>> a, b = FGSM(eps=0.1, seed=1), FGSM(eps=0.1, seed=2)
            >>> a.fingerprint() == FGSM(eps=0.1, seed=1).fingerprint() != b.fingerprint()
            True
            >>> print(FGSM(loss=lambda logits, y, reduction="mean": logits.sum()).fingerprint())
            None
        """
        return perturbation_key(self)[0]

    def __repr__(self) -> str:
        fields = {k: v for k, v in vars(self).items() if k not in ("loss_fn", "last_counts")}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in fields.items())})"

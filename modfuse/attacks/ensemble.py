"""Worst case over several attacks, the AutoAttack way (Croce & Hein 2020, arXiv 2003.01690)."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from modfuse._registry import ATTACKS, register_attack
from modfuse.attacks.apgd import APGD
from modfuse.attacks.base import Attack, AttackContext, Range, returned_inputs
from modfuse.attacks.checks import check_count, check_strength
from modfuse.attacks.pgd import PGD
from modfuse.attacks.square import Square

Tensors = dict[str, torch.Tensor]


def _build(spec: Any, targets: Sequence[str] | None, region: str | None) -> Attack:
    """A member from an attack or a spec; a spec without targets or region gets the ensemble's.

    A built attack without a region gets a copy with the ensemble's region: every member is
    then confined at each of its own steps, not only cut to the region afterwards.
    """
    if isinstance(spec, str):
        spec = {"name": spec}
    if isinstance(spec, Mapping) and targets is not None and "targets" not in spec:
        spec = {**spec, "targets": tuple(targets)}
    if isinstance(spec, Mapping) and region is not None and "region" not in spec:
        spec = {**spec, "region": region}
    attack = ATTACKS.create(spec)
    if not isinstance(attack, Attack):
        raise TypeError(f"ensemble members must be modfuse Attacks, got {type(attack).__name__}")
    if region is not None and attack.region is None:
        attack = copy.copy(attack)
        attack.region = region
    return attack


def _agreed(what: str, values: Sequence[tuple[Attack, Any]]) -> Any:
    """The value of ``what`` that every member has (``(member, value)`` pairs); ValueError
    if they differ."""
    if len({v for _, v in values}) != 1:
        named = ", ".join(f"{type(m).__name__}: {v!r}" for m, v in values)
        raise ValueError(f"ensemble members must share one {what}; got {named}")
    return values[0][1]


@register_attack("worst_case")
class Ensemble(Attack):
    """A sample counts as robust only if it survives every member attack.

    Member 1 runs on the samples the model classifies correctly, member 2 only on those that
    member 1 failed to break, and so on: the cost follows the robust fraction, as in
    AutoAttack. Per sample, the output is the first member's output that fools the model,
    else the last member's (the clean input where the model is wrong to begin with). Every
    member draws its random numbers per sample (``ctx.items``: from its seed, its class name
    and the sample itself) and decides per sample, so a member gives a sample the same result
    on the samples still unbroken as on the whole batch: a sample counts as robust exactly
    when it is classified correctly and every member alone fails to break it. Include
    a gradient-free member (:class:`~modfuse.attacks.square.Square`): a model that hides its
    gradients still falls to it. After a call, ``last_counts["members"]`` lists, per member,
    the samples it ran on and broke and its forward / backward passes.

    Args:
        members: Attacks or specs (``"apgd"``, ``{"name": "square", "queries": 1000}``), run
            in order. All must attack the same targets, untargeted, with strength ``eps``.
        eps: Strength given to every member (``with_strength``); None keeps each member's.
        targets: The keys attacked; default: the first member's. Specs without targets
            get these.
        ranges: Valid range per key for the output (see :class:`Attack`).
        region: Mask key confining every member (see :class:`Attack`); members without a
            region inherit it; default: the members' own, which must agree.

    The ensemble's ``norm`` and ``strength_unit`` are its members': members that mix norms
    (an L-inf PGD with an L2 APGD) are refused, as their eps would mean different things.

    Examples:
        >>> import torch
        >>> from modfuse import FusionModel
        >>> model = FusionModel({"fg": "small_cnn", "bg": "small_cnn"}, num_classes=3).eval()
        >>> x = {"fg": torch.rand(4, 3, 16, 16), "bg": torch.rand(4, 3, 16, 16)}
        >>> y = model(x).argmax(1)  # clean accuracy 1
        >>> attack = Ensemble.standard(eps=8 / 255, steps=3, queries=10)
        >>> adv = attack(model, x, y)
        >>> adv["bg"] is x["bg"], float((adv["fg"] - x["fg"]).abs().max()) <= 8 / 255 + 1e-6
        (True, True)
        >>> attack.last_counts["members"][0]["run"]
        4
    """

    strength_param = "eps"
    uses_gradients = True
    iterative = True

    def __init__(
        self,
        members: Sequence[Attack | str | Mapping[str, Any]],
        eps: float | Mapping[str, float] | None = None,
        targets: Sequence[str] | None = None,
        *,
        ranges: Mapping[str, Range] | None = None,
        model_mode: str = "eval",
        region: str | None = None,
    ) -> None:
        if isinstance(targets, str):
            targets = (targets,)
        if isinstance(members, (str, Mapping, Attack)) or not members:
            raise ValueError(f"an ensemble needs a list of member attacks, got {members!r}")
        built = [_build(m, targets, region) for m in members]
        targets = tuple(targets) if targets is not None else built[0].targets
        region = _agreed("region", [(m, m.region) for m in built])
        norm = _agreed("norm", [(m, m.norm) for m in built])
        unit = _agreed("strength_unit", [(m, m.strength_unit) for m in built])
        for m in built:
            name = type(m).__name__
            if m.targets != targets:
                raise ValueError(f"members must attack {targets}; {name} attacks {m.targets}")
            if m.strength_param != "eps":
                raise ValueError(
                    f"members must take their strength as 'eps'; {name}'s is {m.strength_param!r}"
                )
            if m.targeted:
                raise ValueError(f"members must be untargeted; {name} has targeted=True")
        super().__init__(targets, ranges=ranges, model_mode=model_mode, region=region)
        self.norm, self.strength_unit = norm, unit
        self.members = built
        if eps is not None:
            self.check_strength_value(eps)
        self.eps = eps
        self.uses_gradients = any(m.uses_gradients for m in built)
        self.queries_model = True  # which member runs on which sample follows the model

    def check_strength_value(self, value: Any) -> None:
        """Raise unless ``value`` is a valid eps of every member (each with its own ranges:
        an L-inf eps at most 1 on [0, 1] pixels)."""
        check_strength(value, "eps")
        for m in self.members:
            m.check_strength_value(value)

    @classmethod
    def standard(
        cls,
        eps: float | Mapping[str, float] = 8 / 255,
        targets: Sequence[str] = ("fg",),
        seed: int = 0,
        *,
        steps: int = 100,
        restarts: int = 2,
        target_classes: int = 9,
        queries: int = 5000,
        region: str | None = None,
    ) -> Ensemble:
        """PGD with ``restarts`` random restarts, APGD-CE, APGD-T (targeted DLR), Square.

        AutoAttack's standard set (arXiv 2003.01690) with PGD in front and Square in place of
        FAB-T. APGD-T needs at least 3 classes.

        Args:
            eps: Strength of every member (L-inf), shared or per key.
            targets: The keys attacked.
            seed: Seed of the first member; PGD restart ``r`` uses ``seed + r``.
            steps: Gradient steps of each PGD and APGD run.
            restarts: Number of PGD members, each from its own random start.
            target_classes: Runner-up classes APGD-T tries (at most the classes - 1).
            queries: Square's queries per sample.
            region: Mask key confining every member (see :class:`Attack`).
        """
        check_count(restarts, "restarts")
        t = tuple(targets)
        pgd = [PGD(eps, steps=steps, targets=t, seed=seed + r) for r in range(restarts)]
        return cls(
            [
                *pgd,
                APGD(eps, steps=steps, loss="ce", targets=t, seed=seed),
                APGD(eps, steps, loss="dlr", target_classes=target_classes, targets=t, seed=seed),
                Square(eps, queries=queries, targets=t, seed=seed),
            ],
            eps=eps,
            region=region,
        )

    def _worst_case(self, ctx: AttackContext, x: Tensors) -> tuple[Tensors, list[dict]]:
        """The ensemble's targets and, per member, what it ran on, broke and cost."""
        members = (
            self.members if self.eps is None else [m.with_strength(self.eps) for m in self.members]
        )
        adv = dict(x)
        robust = ctx.predictions(x) == ctx.labels  # (B,)
        report = []
        for m in members:
            idx = robust.nonzero().squeeze(1)  # (R,) samples no member has broken yet
            entry: dict[str, Any] = {
                "attack": type(m).__name__,
                "run": int(idx.numel()),
                "broken": 0,
            }
            entry |= {"forward": 0, "backward": 0}
            report.append(entry)
            if not entry["run"]:
                continue
            sub = {k: v[idx] for k, v in ctx.inputs.items()}
            labels = ctx.labels[idx]
            out = m(ctx.model, sub, labels)
            with torch.no_grad():
                survived = ctx.model(out).argmax(1) == labels  # (R,)
            for k in self.targets:
                adv[k] = adv[k].index_copy(0, idx, out[k].to(adv[k].dtype))
            robust = robust.index_put((idx,), survived)
            entry.update(broken=int((~survived).sum()), **m.last_counts)
            entry["forward"] += 1  # the check of the member's output
        return adv, report

    def perturb(self, ctx: AttackContext, x: Tensors) -> Tensors:
        """The worst case over the members (see the class docstring)."""
        return self._worst_case(ctx, x)[0]

    def __call__(
        self, model: nn.Module, inputs: Mapping[str, torch.Tensor], labels: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Attack ``inputs`` with every member in turn; per-member counts in ``last_counts``."""

        def work(ctx: AttackContext, x: Tensors) -> tuple[dict, list[dict]]:
            adv, report = self._worst_case(ctx, x)
            changed = {k: ctx.clamp(k, adv[k]) for k in self.targets}
            return returned_inputs(inputs, ctx.inputs, self.targets, changed), report

        out, report = self.run(model, inputs, labels, work)
        own = self.last_counts  # the ensemble's own passes: the clean predictions
        self.last_counts = {
            "forward": own["forward"] + sum(r["forward"] for r in report),
            "backward": own["backward"] + sum(r["backward"] for r in report),
            "members": report,
        }
        return out

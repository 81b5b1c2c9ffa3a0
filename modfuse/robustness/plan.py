"""The plan of a robustness sweep: what every batch asks of every model, decided once.

Which perturbed inputs are computed once for every model (a model-independent corruption,
a transfer attack's), which are computed against each model itself (white-box), which
models see their inputs untouched (they do not take the attack's targets), which features
can be shared between them, and which sweep's gradient pass gives a model's clean answers
(FGSM passes through the clean input anyway: one forward pass per batch and model less).
None of this depends on a batch's contents, so :func:`plan_sweep` decides it before the
first batch and :func:`modfuse.robustness.batch.run_batch` carries it out on each.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from modfuse.model.fusion_model import FusionModel
from modfuse.robustness.inputs import SweptModel, feature_tags, takes_targets
from modfuse.robustness.sweep import Sweep

#: How a model of a step gets its perturbed inputs: its own inputs (it does not take the
#: attack's targets), the step's shared ones (computed once, on another model), or its own
#: white-box attack.
Role = Literal["untouched", "shared", "white_box"]


@dataclass(frozen=True)
class ModelStep:
    """What one sweep does to one model, on every batch.

    Attributes:
        name: The model's name.
        role: How it gets its perturbed inputs (:data:`Role`).
        tags: Per strength, which modalities' features may be shared
            (:func:`modfuse.robustness.inputs.feature_tags`).
        takes_fixed: Its white-box attack takes the untouched modalities' clean features.
        takes_clean_out: Its white-box attack can report its pass at the clean input.
        counts_clean: That pass gives the model's clean answers (none other is made).
    """

    name: str
    role: Role
    tags: tuple[dict[str, Any], ...]
    takes_fixed: bool = False
    takes_clean_out: bool = False
    counts_clean: bool = False


@dataclass(frozen=True)
class SweepStep:
    """One sweep's work on every batch.

    Attributes:
        sweep: The sweep.
        shared_on: The model whose perturbed inputs every other model shares: the source of
            a transfer attack, or the first model that takes a model-independent
            corruption's targets (applied once for all); None where each model is attacked
            itself.
        models: Per model, in the order of the sweep's models.
    """

    sweep: Sweep
    shared_on: str | None
    models: tuple[ModelStep, ...]

    @property
    def strengths(self) -> list[float]:
        return [float(v) for v in self.sweep.strengths]


@dataclass(frozen=True)
class SweepPlan:
    """The whole sweep's work on every batch.

    Attributes:
        models: The swept models, by name.
        clean_from: Per model, the sweep whose white-box pass gives its clean answers, or
            None for a clean forward pass of its own.
        steps: One per sweep, in the order given.
    """

    models: Mapping[str, SweptModel]
    clean_from: Mapping[str, str | None]
    steps: tuple[SweepStep, ...]

    def lead_tags(self, name: str) -> dict[str, Any]:
        """Feature tags of the modalities that model ``name``'s clean-giving sweep leaves
        untouched (``"clean"``): encoded in the clean pass, for that attack to reuse."""
        lead = next(s for s in self.steps if s.sweep.name == self.clean_from[name])
        return feature_tags(self.models[name], lead.sweep.attack, None)


def takes_hint(attack: Any, argument: str) -> bool:
    """Whether ``attack.sweep`` takes ``argument`` (an optional hint of work to share)."""
    return argument in inspect.signature(attack.sweep).parameters


def gives_clean(sweep: Sweep, model: SweptModel) -> bool:
    """Whether ``sweep``'s white-box attack on ``model`` passes through the clean input with
    gradients anyway (FGSM), so its logits there are the clean logits."""
    attack = sweep.attack
    return (
        sweep.source is None
        and attack.depends_on_model
        and bool(model.encoders)  # not a FeatureHead: its inputs are already features
        and takes_targets(model, attack)
        and takes_hint(attack, "clean_out")
    )


def plan_sweep(models: Mapping[str, SweptModel], sweeps: Sequence[Sweep]) -> SweepPlan:
    """Decide, once for every batch, what each sweep asks of each model.

    Raises:
        ValueError: a transfer sweep's source model does not take the attack's targets.

    Examples:
        >>> from modfuse.attacks import FGSM, GaussianBlur
        >>> models = {"joint": FusionModel({"fg": "small_cnn", "bg": "small_cnn"}, num_classes=2),
        ...           "bg_only": FusionModel({"bg": "small_cnn"}, num_classes=2)}
        >>> plan = plan_sweep(models, [Sweep("blur", GaussianBlur(targets=("fg",)), [1.0]),
        ...                            Sweep("fgsm", FGSM(targets=("fg",)), [0.01])])
        >>> [(s.shared_on, [m.role for m in s.models]) for s in plan.steps]
        [('joint', ['shared', 'untouched']), (None, ['white_box', 'untouched'])]
        >>> dict(plan.clean_from)
        {'joint': 'fgsm', 'bg_only': None}
    """
    clean_from: dict[str, str | None] = {}
    for n, model in models.items():
        lead = next((s for s in sweeps if gives_clean(s, model)), None)
        clean_from[n] = lead.name if lead and isinstance(model, FusionModel) else None
    steps = []
    for sweep in sweeps:
        attack = sweep.attack
        if sweep.source is not None and not takes_targets(models[sweep.source], attack):
            raise ValueError(
                f"sweep {sweep.name!r}: its source model {sweep.source!r} takes "
                f"{models[sweep.source].input_keys()}, not the attack's targets "
                f"{list(attack.targets)}: a transfer attack is computed on the source"
            )
        shared_on = sweep.source
        if shared_on is None and not attack.depends_on_model:
            shared_on = next((n for n, m in models.items() if takes_targets(m, attack)), None)
        steps.append(
            SweepStep(
                sweep,
                shared_on,
                tuple(
                    _model_step(sweep, n, m, shared_on, clean_from[n] == sweep.name)
                    for n, m in models.items()
                ),
            )
        )
    return SweepPlan(models, clean_from, tuple(steps))


def _model_step(
    sweep: Sweep, name: str, model: SweptModel, shared_on: str | None, counts_clean: bool
) -> ModelStep:
    attack = sweep.attack
    # A perturbed input shared between models is tagged by its point, so that every model
    # with the same encoder reuses its features; a white-box one is every model's own.
    points = [f"{sweep.name}@{float(v)}" if shared_on else None for v in sweep.strengths]
    tags = tuple(feature_tags(model, attack, p) for p in points)
    if not takes_targets(model, attack):
        return ModelStep(name, "untouched", tags)
    if shared_on is not None:
        return ModelStep(name, "shared", tags)
    return ModelStep(
        name,
        "white_box",
        tags,
        takes_fixed=takes_hint(attack, "fixed"),
        takes_clean_out=takes_hint(attack, "clean_out"),
        counts_clean=counts_clean,
    )

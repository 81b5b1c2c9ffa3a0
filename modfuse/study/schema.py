"""The study schema: a whole robustness protocol as one pydantic model (YAML in, JSON out).

A study names its data, shared encoders (one per modality), named models (each reading a
subset of the modalities), seeds, an evaluation (attacks crossed with threat models) and
hypotheses judged on the seed means. Modules named in ``imports`` are imported before anything
is checked, so a study can name the encoders, fusions, attacks and regularizers they register.

Examples:
    >>> cfg = StudyConfig.model_validate({
    ...     "data": {"callable": "modfuse.study.toy:three_modalities"},
    ...     "encoders": {"a": {"name": "mlp", "in_dim": 4}, "b": {"name": "mlp", "in_dim": 4}},
    ...     "models": {"joint": {"modalities": ["a", "b"]}, "a_only": {"modalities": ["a"]}},
    ...     "evaluation": {"attacks": [{"name": "noise", "attack": {"name": "noise"},
    ...                                 "strengths": [0.5]}]},
    ... })
    >>> [t.name for t in cfg.threat_models()]
    ['a', 'b']
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, NonNegativeFloat, PositiveInt, field_validator, model_validator

from modfuse._registry import FUSIONS
from modfuse.config.checks import StrictConfig, check_component, check_device
from modfuse.config.imports import import_listed
from modfuse.config.schema import DataConfig, SweepConfig, TrainConfig
from modfuse.config.specs import ComponentSpec, check_encoder_specs, spec_value

__all__ = [
    "AttackConfig",
    "HypothesisConfig",
    "StudyConfig",
    "StudyData",
    "StudyModel",
    "ThreatModel",
]

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class StudyData(DataConfig):
    """The data: a kind ``modfuse run`` knows, or ``callable: "package.module:function"``
    returning ``(train, test)`` datasets of dicts (each item: its modalities and ``label``).
    The function gets ``seed=`` when it takes it and ``kwargs``."""

    callable: str | None = Field(None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    kwargs: dict[str, Any] = Field(default_factory=dict)


class StudyModel(StrictConfig):
    """One named model: the modalities it reads (each with the study's encoder of that name),
    its fusion, its regularizers and training overrides (adversarial training among them)."""

    modalities: list[str] = Field(min_length=1)
    fusion: str | ComponentSpec = "concat"
    fusion_dim: PositiveInt | None = None
    #: What the model does with a missing modality (see ``FusionModel(missing=...)``).
    missing: Literal["error", "zeros", "learned"] = "error"
    train: dict[str, Any] = Field(default_factory=dict)

    @field_validator("fusion")
    @classmethod
    def _fusion_known(cls, v: str | ComponentSpec) -> str | ComponentSpec:
        check_component(FUSIONS, spec_value(v), ("in_dims", "out_dim"))
        return v


class ThreatModel(StrictConfig):
    """Which keys an attacker moves (``targets``), and optionally only in a ``region``."""

    name: str = Field(pattern=NAME)
    targets: list[str] = Field(min_length=1)
    region: str | None = None


class AttackConfig(SweepConfig):
    """An attack swept over strengths; its targets come from each threat model."""

    threat_models: list[str] | None = None  # None: every threat model of the study
    #: Evaluate on the first ``items`` test items only (a costly worst case); None: all.
    items: PositiveInt | None = None


class HypothesisConfig(StrictConfig):
    """``better`` beats ``worse`` under ``attack`` on ``threat`` at ``strength`` by at least
    ``margin``, judged on the seed means (``attack: clean`` compares clean accuracies)."""

    name: str
    better: str
    worse: str
    attack: str
    threat: str | None = None
    strength: NonNegativeFloat = 0.0
    margin: float = 0.0


class Evaluation(StrictConfig):
    batch_size: PositiveInt = 128
    #: Each modality alone as its own threat model (the single-source adversary).
    single_source: bool = True
    threat_models: list[ThreatModel] = Field(default_factory=list)
    attacks: list[AttackConfig] = Field(default_factory=list)


class StudyConfig(StrictConfig):
    """A whole study (see the "Studies" page of the docs for every field)."""

    name: str = Field("study", pattern=NAME, max_length=100)
    imports: list[str] = Field(default_factory=list)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    #: What a seed varies beside the heads: "data" (the data function's seed), "encoders"
    #: (the initial weights of encoders that are trained).
    vary: list[Literal["data", "encoders"]] = Field(default_factory=list)
    device: str | None = None
    data: StudyData = Field(default_factory=StudyData)
    num_classes: PositiveInt | None = None
    encoders: dict[str, str | ComponentSpec] = Field(min_length=1)
    models: dict[str, StudyModel] = Field(min_length=1)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluation: Evaluation = Field(default_factory=Evaluation)
    hypotheses: list[HypothesisConfig] = Field(default_factory=list)
    #: Overrides merged over this config by ``--quick``.
    quick: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _import_first(cls, data: Any) -> Any:
        return import_listed(data)  # the user's components, registered before any check

    @field_validator("encoders")
    @classmethod
    def _encoders_known(cls, v: dict[str, str | ComponentSpec]) -> dict[str, str | ComponentSpec]:
        return check_encoder_specs(v)  # as a run config's: registered, frozen ones with weights

    @field_validator("device")
    @classmethod
    def _device_known(cls, v: str | None) -> str | None:
        return v if v is None else check_device(v)

    @model_validator(mode="after")
    def _parts_agree(self) -> StudyConfig:
        for name, m in self.models.items():
            unknown = sorted(set(m.modalities) - set(self.encoders))
            if unknown:
                raise ValueError(
                    f"models.{name}: modalities {unknown} have no encoder; the study's "
                    f"encoders are {sorted(self.encoders)}"
                )
        threats = {t.name: t for t in self.threat_models()}
        for a in self.evaluation.attacks:
            for t in a.threat_models or []:
                if t not in threats:
                    raise ValueError(f"attack {a.name!r}: unknown threat model {t!r}; "
                                     f"the study has {sorted(threats)}")
        names = [a.name for a in self.evaluation.attacks]
        if len(set(names)) != len(names) or "clean" in names:
            raise ValueError(f"attack names must be unique and not 'clean', got {names}")
        for h in self.hypotheses:
            for who in (h.better, h.worse):
                if who not in self.models:
                    raise ValueError(f"hypothesis {h.name!r}: unknown model {who!r}; the "
                                     f"study's models are {sorted(self.models)}")
            if h.attack != "clean":
                if h.attack not in names:
                    raise ValueError(f"hypothesis {h.name!r}: unknown attack {h.attack!r}; "
                                     f"the study's attacks are {names}")
                if h.threat not in threats:
                    raise ValueError(f"hypothesis {h.name!r}: threat {h.threat!r} is not one "
                                     f"of {sorted(threats)}")
        return self

    def threat_models(self) -> list[ThreatModel]:
        """The evaluated threat models: each modality alone (unless ``single_source`` is
        off), then the study's own, in order; a named one replaces the modality's default."""
        own = {t.name: t for t in self.evaluation.threat_models}
        found = []
        if self.evaluation.single_source:
            found = [own.pop(m, ThreatModel(name=m, targets=[m])) for m in sorted(self.encoders)]
        return found + list(own.values())

"""Pydantic experiment schema with YAML/JSON in and out: the edge where configs become objects.

Examples:
    >>> cfg = ModelConfig(encoders={"fg": "small_cnn", "bg": "small_cnn"}, num_classes=3)
    >>> ModelConfig.model_validate(load_yaml_text(to_yaml(cfg))) == cfg
    True
    >>> import torch
    >>> x = {"fg": torch.rand(1, 3, 16, 16), "bg": torch.rand(1, 3, 16, 16)}
    >>> cfg.build()(x).shape
    torch.Size([1, 3])
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from modfuse._registry import ATTACKS, FUSIONS, REGULARIZERS
from modfuse.config.checks import (
    StrictConfig,
    check_device,
)
from modfuse.config.experiment import check_experiment
from modfuse.config.imports import import_listed
from modfuse.config.loading import load_yaml_text, save_config, to_yaml
from modfuse.config.specs import (
    ComponentSpec,
    check_encoder_specs,
    encoder_value,
    known,
    spec_value,
)

__all__ = [
    "ComponentSpec",
    "DataConfig",
    "EvalConfig",
    "SweepConfig",
    "ExperimentConfig",
    "ModelConfig",
    "TrainConfig",
    "ValidationError",
    "ViewsConfig",
    "check_device",
    "load_config",
    "load_yaml_text",
    "save_config",
    "to_yaml",
]


class ViewsConfig(StrictConfig):
    """Settings of :class:`modfuse.model.views.ContextViews`."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    size: PositiveInt | None = None
    fg_mode: Literal["mask", "box"] = "mask"
    fill: Literal["mean", "zero"] = "mean"
    margin: NonNegativeFloat = 0.1
    hide: Literal["box", "mask"] = "box"


class ModelConfig(StrictConfig):
    """The arguments of :class:`modfuse.FusionModel`, checked against the registries."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    encoders: dict[str, str | ComponentSpec] = Field(min_length=1)
    fusion: str | ComponentSpec = "concat"
    num_classes: PositiveInt
    fusion_dim: PositiveInt | None = None
    missing: Literal["error", "zeros", "learned"] = "error"
    unimodal_heads: bool = False
    views: ViewsConfig | None = None

    @field_validator("encoders")
    @classmethod
    def _encodersknown(cls, v: dict[str, str | ComponentSpec]) -> dict[str, str | ComponentSpec]:
        return check_encoder_specs(v)

    @field_validator("fusion")
    @classmethod
    def _fusionknown(cls, v: str | ComponentSpec) -> str | ComponentSpec:
        return known(FUSIONS, v, injected=("in_dims", "out_dim"))

    def build(self) -> Any:
        """The :class:`modfuse.FusionModel` this config describes."""
        from modfuse.model.fusion_model import FusionModel

        return FusionModel.from_spec(
            {
                "encoders": {m: encoder_value(s) for m, s in self.encoders.items()},
                "fusion": spec_value(self.fusion),
                "num_classes": self.num_classes,
                "fusion_dim": self.fusion_dim,
                "missing": self.missing,
                "unimodal_heads": self.unimodal_heads,
                "views": self.views.model_dump() if self.views else None,
            }
        )


class TrainConfig(StrictConfig):
    """Training settings (see :class:`modfuse.training.trainer.Trainer`)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    epochs: PositiveInt = 10
    #: Share of the training items held out to pick the best epoch (never the test set).
    val_fraction: float = Field(0.1, gt=0, lt=1)
    batch_size: PositiveInt = 64
    lr: PositiveFloat = 1e-3
    weight_decay: NonNegativeFloat = 0.0
    regularizers: list[ComponentSpec] = Field(default_factory=list)
    adversarial: ComponentSpec | None = None
    adversarial_mix: float = Field(0.5, ge=0, le=1)
    modality_dropout: float = Field(0.0, ge=0, lt=1)
    #: Weight of the unimodal heads' loss; None: 1.0 with ``model.unimodal_heads``, else 0.
    unimodal_weight: NonNegativeFloat | None = None

    def trainer_arguments(self) -> dict[str, Any]:
        """These settings as :class:`modfuse.training.Trainer`'s keyword arguments (the
        caller adds the seed, the run folder and where it runs)."""
        return {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "regularizers": [r.as_spec() for r in self.regularizers],
            "adversarial": self.adversarial.as_spec() if self.adversarial else None,
            "adversarial_mix": self.adversarial_mix,
            "modality_dropout": self.modality_dropout,
            "unimodal_weight": self.unimodal_weight,
        }

    @field_validator("regularizers")
    @classmethod
    def _regularizersknown(cls, v: list[ComponentSpec]) -> list[ComponentSpec]:
        for i, spec in enumerate(v):
            try:
                known(REGULARIZERS, spec, build=True)
            except ValueError as err:
                raise ValueError(f"regularizers.{i}: {err}") from None
        return v

    @field_validator("adversarial")
    @classmethod
    def _attackknown(cls, v: ComponentSpec | None) -> ComponentSpec | None:
        return v if v is None else known(ATTACKS, v, build=True)


class DataConfig(StrictConfig):
    """Where the data comes from: the embedded synthetic world, a COCO folder or CIFAR-10."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    kind: Literal["synthetic", "coco", "cifar10"] = "synthetic"
    root: str = "data"
    n_train: PositiveInt = 2000
    n_test: PositiveInt = 500
    size: PositiveInt = 48
    contexts: Literal["distinct", "similar"] = "distinct"
    context_purity: float | None = Field(None, ge=0, le=1)
    categories: list[str | int] | None = None
    image_size: PositiveInt | None = None
    hide_instances: Literal["category", "item", "all"] = "category"
    workers: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _written_root_stays_inside(self) -> DataConfig:
        # `modfuse run` writes the synthetic world to `root`: keep it inside the working folder.
        if self.kind == "synthetic":
            parts = Path(self.root).parts
            if Path(self.root).is_absolute() or ".." in parts:
                raise ValueError(
                    f"data.root {self.root!r}: the synthetic world is written there, so it must "
                    "be a relative path without '..'"
                )
        return self


class SweepConfig(StrictConfig):
    """One perturbation swept over strengths (see :class:`modfuse.robustness.Sweep`)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    name: str
    attack: ComponentSpec
    strengths: list[NonNegativeFloat] = Field(min_length=1)
    source: str | None = None

    @field_validator("attack")
    @classmethod
    def _attackknown(cls, v: ComponentSpec) -> ComponentSpec:
        return known(ATTACKS, v, build=True)

    @model_validator(mode="after")
    def _strengths_fit(self) -> SweepConfig:
        # The sweep's own checks (strength count, largest valid strength) run before training.
        from modfuse.robustness.sweep import Sweep

        try:
            sweep = Sweep(self.name, self.attack.as_spec(), list(self.strengths), self.source)
            if sweep.attack.strength_param is not None:
                for value in self.strengths:
                    sweep.attack.with_strength(value)
        except (TypeError, ValueError, KeyError) as err:
            raise ValueError(f"strengths {self.strengths}: {err}") from None
        return self


class EvalConfig(StrictConfig):
    """Robustness evaluation settings."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    batch_size: PositiveInt = 128
    sweeps: list[SweepConfig] = Field(default_factory=list)


class ExperimentConfig(StrictConfig):
    """A whole experiment: data, model, training and evaluation.

    ``device`` (e.g. ``"cuda"``) is where training, the feature cache and evaluation run;
    None picks this process's GPU if there is one, else the CPU.

    ``name`` names the run folder (``runs/<name>``): letters, digits, ``_``, ``.`` and ``-``
    only, so that a config cannot make the command write outside its run folder.

    ``seed`` seeds the model's initial weights, the data order and random perturbations: one
    config gives byte-identical results on one machine. No number may be NaN or infinite.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    #: Modules imported before anything is checked (they register the user's components).
    imports: list[str] = Field(default_factory=list)
    name: str = Field("experiment", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)
    seed: int = Field(0, ge=0, lt=2**32)
    device: str | None = None
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    @model_validator(mode="before")
    @classmethod
    def _import_first(cls, data: Any) -> Any:
        return import_listed(data)  # the user's components, registered before any check

    @field_validator("device")
    @classmethod
    def _deviceknown(cls, v: str | None) -> str | None:
        return v if v is None else check_device(v)

    @model_validator(mode="after")
    def _parts_agree(self) -> ExperimentConfig:
        check_experiment(self)  # modalities, targets, sweeps and training terms agree
        return self


def load_config(path: str | os.PathLike, cls: type[BaseModel] = ExperimentConfig) -> Any:
    """Read a YAML or JSON config file into ``cls`` (JSON is YAML, so one parser serves)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} not found")
    data = load_yaml_text(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return cls.model_validate(data)

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

import inspect
import os
from pathlib import Path
from typing import Any, Literal

import yaml
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

from modfuse._registry import ATTACKS, ENCODERS, FUSIONS, REGULARIZERS, Registry

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


class ComponentSpec(BaseModel):
    """A registered component: its ``name`` and any keyword arguments."""

    model_config = ConfigDict(extra="allow")
    name: str

    def as_spec(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=False)


def _known(
    registry: Registry[Any], spec: str | ComponentSpec, injected: tuple[str, ...] = ()
) -> str | ComponentSpec:
    """Check that ``spec`` names a registered component and its arguments fit its signature.

    ``injected`` names the arguments the library passes itself (a fusion's in_dims, out_dim).
    """
    name = spec if isinstance(spec, str) else spec.name
    if name not in registry:
        raise ValueError(f"unknown {registry.kind} {name!r}; registered: {registry.names()}")
    factory, args = registry.get(name)
    kwargs = (
        {} if isinstance(spec, str) else {k: v for k, v in spec.as_spec().items() if k != "name"}
    )
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return spec  # a factory without a readable signature: checked when built
    try:
        signature.bind(*args, **kwargs, **{k: None for k in injected})
    except TypeError as err:
        raise ValueError(f"{registry.kind} {name!r}: {err}") from None
    return spec


def _as_spec(spec: str | ComponentSpec) -> Any:
    return spec if isinstance(spec, str) else spec.as_spec()


class ViewsConfig(BaseModel):
    """Settings of :class:`modfuse.views.ContextViews`."""

    model_config = ConfigDict(extra="forbid")
    size: PositiveInt | None = None
    fg_mode: Literal["mask", "box"] = "mask"
    fill: Literal["mean", "zero"] = "mean"
    margin: NonNegativeFloat = 0.1
    hide: Literal["box", "mask"] = "box"


class ModelConfig(BaseModel):
    """The arguments of :class:`modfuse.FusionModel`, checked against the registries."""

    model_config = ConfigDict(extra="forbid")
    encoders: dict[str, str | ComponentSpec] = Field(min_length=1)
    fusion: str | ComponentSpec = "concat"
    num_classes: PositiveInt
    fusion_dim: PositiveInt | None = None
    missing: Literal["error", "zeros", "learned"] = "error"
    unimodal_heads: bool = False
    views: ViewsConfig | None = None

    @field_validator("encoders")
    @classmethod
    def _encoders_known(cls, v: dict[str, str | ComponentSpec]) -> dict[str, str | ComponentSpec]:
        for spec in v.values():
            _known(ENCODERS, spec)
        return v

    @field_validator("fusion")
    @classmethod
    def _fusion_known(cls, v: str | ComponentSpec) -> str | ComponentSpec:
        return _known(FUSIONS, v, injected=("in_dims", "out_dim"))

    def build(self) -> Any:
        """The :class:`modfuse.FusionModel` this config describes."""
        from modfuse.model import FusionModel

        return FusionModel.from_spec(
            {
                "encoders": {m: _as_spec(s) for m, s in self.encoders.items()},
                "fusion": _as_spec(self.fusion),
                "num_classes": self.num_classes,
                "fusion_dim": self.fusion_dim,
                "missing": self.missing,
                "unimodal_heads": self.unimodal_heads,
                "views": self.views.model_dump() if self.views else None,
            }
        )


class TrainConfig(BaseModel):
    """Training settings (see :class:`modfuse.train.Trainer`)."""

    model_config = ConfigDict(extra="forbid")
    epochs: PositiveInt = 10
    batch_size: PositiveInt = 64
    lr: PositiveFloat = 1e-3
    weight_decay: NonNegativeFloat = 0.0
    regularizers: list[ComponentSpec] = Field(default_factory=list)
    adversarial: ComponentSpec | None = None
    adversarial_mix: float = Field(0.5, ge=0, le=1)
    modality_dropout: float = Field(0.0, ge=0, lt=1)

    @field_validator("regularizers")
    @classmethod
    def _regularizers_known(cls, v: list[ComponentSpec]) -> list[ComponentSpec]:
        for spec in v:
            _known(REGULARIZERS, spec)
        return v

    @field_validator("adversarial")
    @classmethod
    def _attack_known(cls, v: ComponentSpec | None) -> ComponentSpec | None:
        return v if v is None else _known(ATTACKS, v)


class DataConfig(BaseModel):
    """Where the data comes from: the embedded synthetic world, a COCO folder or CIFAR-10."""

    model_config = ConfigDict(extra="forbid")
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


class SweepConfig(BaseModel):
    """One perturbation swept over strengths (see :class:`modfuse.evaluate.Sweep`)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    attack: ComponentSpec
    strengths: list[NonNegativeFloat] = Field(min_length=1)
    source: str | None = None

    @field_validator("attack")
    @classmethod
    def _attack_known(cls, v: ComponentSpec) -> ComponentSpec:
        return _known(ATTACKS, v)


class EvalConfig(BaseModel):
    """Robustness evaluation settings."""

    model_config = ConfigDict(extra="forbid")
    batch_size: PositiveInt = 128
    sweeps: list[SweepConfig] = Field(default_factory=list)


class ExperimentConfig(BaseModel):
    """A whole experiment: data, model, training and evaluation.

    ``device`` (e.g. ``"cuda"``) is where training, the feature cache and evaluation run;
    None picks this process's GPU if there is one, else the CPU.

    ``name`` names the run folder (``runs/<name>``): letters, digits, ``_``, ``.`` and ``-``
    only, so that a config cannot make the command write outside its run folder.
    """

    model_config = ConfigDict(extra="forbid")
    name: str = Field("experiment", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)
    seed: int = 0
    device: str | None = None
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    @field_validator("device")
    @classmethod
    def _device_known(cls, v: str | None) -> str | None:
        return v if v is None else check_device(v)

    @model_validator(mode="after")
    def _modalities_exist(self) -> ExperimentConfig:
        mods = sorted(self.model.encoders)
        inputs = mods + (["image", "mask"] if self.model.views is not None else [])
        for i, reg in enumerate(self.train.regularizers):
            modality = getattr(reg, "modality", None)
            if modality is not None and modality not in mods:
                raise ValueError(
                    f"train.regularizers.{i}.modality: {modality!r} is not a modality of the "
                    f"model; expected one of {mods}"
                )
        attacks = [("train.adversarial", self.train.adversarial)] + [
            (f"eval.sweeps.{i}.attack", s.attack) for i, s in enumerate(self.eval.sweeps)
        ]
        for where, spec in attacks:
            targets = getattr(spec, "targets", None) if spec is not None else None
            for t in targets or []:
                if t not in inputs:
                    raise ValueError(
                        f"{where}.targets: {t!r} is not an input of the model; expected {inputs}"
                    )
        names = [s.name for s in self.eval.sweeps]
        if len(set(names)) != len(names) or "clean" in names:
            raise ValueError(f"eval.sweeps: names must be unique and not 'clean', got {names}")
        return self


def check_device(device: str) -> str:
    """``device`` if torch can parse it (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``).

    Raises:
        ValueError: torch does not know the device string.
    """
    import torch

    try:
        torch.device(device)
    except RuntimeError as err:
        raise ValueError(
            f"device {device!r} is not a torch device; expected e.g. 'cpu', 'cuda', 'cuda:1'"
        ) from err
    return device


def load_yaml_text(text: str) -> Any:
    """Parse YAML with the safe loader (no Python objects), with a clear error."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValueError(f"malformed YAML: {err}") from err


def to_yaml(cfg: BaseModel) -> str:
    """A config as YAML text."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def load_config(path: str | os.PathLike, cls: type[BaseModel] = ExperimentConfig) -> Any:
    """Read a YAML or JSON config file into ``cls`` (JSON is YAML, so one parser serves)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} not found")
    data = load_yaml_text(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return cls.model_validate(data)


def save_config(cfg: BaseModel, path: str | os.PathLike) -> None:
    """Write a config as YAML (``.yaml``/``.yml``) or JSON (anything else), atomically."""
    from modfuse.checkpoint import atomic_write_bytes

    path = Path(path)
    if path.suffix in (".yaml", ".yml"):
        text = to_yaml(cfg)
    else:
        text = cfg.model_dump_json(indent=2) + "\n"
    atomic_write_bytes(path, text.encode())

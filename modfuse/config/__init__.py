"""Experiment configs: a pydantic schema over YAML, turned into ``create(...)`` calls.

- :mod:`~modfuse.config.schema`: :class:`ExperimentConfig` and :func:`load_config`;
- :mod:`~modfuse.config.loading`: safe YAML reading and writing;
- :mod:`~modfuse.config.checks`: checks of one component spec and of values;
- :mod:`~modfuse.config.experiment`: checks that the parts of a config agree.
"""

from modfuse.config.schema import (
    ComponentSpec,
    DataConfig,
    EvalConfig,
    ExperimentConfig,
    ModelConfig,
    SweepConfig,
    TrainConfig,
    ValidationError,
    ViewsConfig,
    check_device,
    load_config,
    load_yaml_text,
    save_config,
    to_yaml,
)

__all__ = [
    "ComponentSpec",
    "DataConfig",
    "EvalConfig",
    "ExperimentConfig",
    "ModelConfig",
    "SweepConfig",
    "TrainConfig",
    "ValidationError",
    "ViewsConfig",
    "check_device",
    "load_config",
    "load_yaml_text",
    "save_config",
    "to_yaml",
]

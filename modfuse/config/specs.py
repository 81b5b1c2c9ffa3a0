"""Component specs in a config: a registered name or ``{"name": ..., **kwargs}``, checked
against its registry, and turned into what the registry's ``create`` takes.

Examples:
    >>> spec = ComponentSpec(name="small_cnn", width=8, random_ok=True)
    >>> spec_value(spec)["width"], "random_ok" in encoder_value(spec)
    (8, False)
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict

from modfuse._registry import ENCODERS, Registry
from modfuse.config.checks import check_component, check_frozen_weights

__all__ = ["ComponentSpec", "check_encoder_specs", "encoder_value", "known", "spec_value"]


class ComponentSpec(BaseModel):
    """A registered component: its ``name`` and any keyword arguments."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)
    name: str

    def as_spec(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=False)


SpecT = TypeVar("SpecT", bound="str | ComponentSpec")


def known(
    registry: Registry[Any],
    spec: SpecT,
    injected: tuple[str, ...] = (),
    build: bool = False,
) -> SpecT:
    """Check ``spec`` against ``registry`` (:func:`modfuse.config.checks.check_component`);
    with ``build`` (light attacks, regularizers) its constructor's checks run now, not after
    training."""
    check_component(registry, spec_value(spec), injected=injected, build=build)
    return spec


def spec_value(spec: str | ComponentSpec) -> Any:
    """What a registry's ``create`` takes: the name, or the ``{"name": ..., **kwargs}`` dict."""
    return spec if isinstance(spec, str) else spec.as_spec()


def _encoder_spec(spec: str | ComponentSpec) -> str | ComponentSpec:
    """The encoder's own spec: ``random_ok`` is the config's, not an encoder argument."""
    if isinstance(spec, str) or "random_ok" not in (spec.model_extra or {}):
        return spec
    return ComponentSpec.model_validate(
        {k: v for k, v in spec.as_spec().items() if k != "random_ok"}
    )


def encoder_value(spec: str | ComponentSpec) -> Any:
    """What ``ENCODERS.create`` takes for an encoder of a config (``random_ok`` left out)."""
    return spec_value(_encoder_spec(spec))


def check_encoder_specs(
    encoders: dict[str, str | ComponentSpec],
) -> dict[str, str | ComponentSpec]:
    """Check every modality's encoder spec against the registry, and that a frozen one has
    weights (unless ``random_ok``); returned unchanged.

    Raises:
        ValueError: naming the modality (``encoders.fg: ...``).
    """
    for modality, spec in encoders.items():
        try:
            known(ENCODERS, _encoder_spec(spec))
        except ValueError as err:
            raise ValueError(f"encoders.{modality}: {err}") from None
        check_frozen_weights(f"encoders.{modality}", spec_value(spec))
    return encoders

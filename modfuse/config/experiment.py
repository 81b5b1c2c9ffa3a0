"""Checks that the parts of an experiment config agree with each other (modalities, attack
targets, training terms, sweep names and sources), run when the config loads."""

from __future__ import annotations

from typing import Any

from modfuse.model.views import ContextViews

__all__ = ["check_experiment"]


def check_experiment(cfg: Any) -> None:
    """Raise ValueError unless the parts of an experiment config agree with each other:
    every named modality and attack target exists, learned placeholders and unimodal heads
    get trained, sweeps name a model of the run and are unique."""
    mods = sorted(cfg.model.encoders)
    raw = list(ContextViews.input_keys) if cfg.model.views is not None else []
    inputs = mods + raw
    dropout = cfg.train.modality_dropout > 0 or any(
        r.name == "modality_dropout" for r in cfg.train.regularizers
    )
    if cfg.model.missing == "learned" and not dropout:
        raise ValueError(
            "model.missing: 'learned' placeholders are trained only when modalities go "
            "missing in training; set train.modality_dropout > 0 (or add a "
            "modality_dropout regularizer), or use missing: zeros"
        )
    if cfg.train.unimodal_weight and not cfg.model.unimodal_heads:
        raise ValueError(
            f"train.unimodal_weight: {cfg.train.unimodal_weight} needs "
            "model.unimodal_heads: true (the model has no unimodal heads to train)"
        )
    for i, reg in enumerate(cfg.train.regularizers):
        modality = (reg.model_extra or {}).get("modality")
        if modality is not None and modality not in mods:
            raise ValueError(
                f"train.regularizers.{i}.modality: {modality!r} is not a modality of the "
                f"model; expected one of {mods}"
            )
    attacks = [("train.adversarial", cfg.train.adversarial)] + [
        (f"eval.sweeps.{i}.attack", s.attack) for i, s in enumerate(cfg.eval.sweeps)
    ]
    for where, spec in attacks:
        extra = spec.model_extra or {} if spec is not None else {}
        # An adapter of a single-input library names one `target`.
        targets = extra.get("targets") or extra.get("target")
        for t in [targets] if isinstance(targets, str) else targets or []:
            if t not in inputs:
                raise ValueError(
                    f"{where}.targets: {t!r} is not an input of the model; expected {inputs}"
                )
    for i, sweep in enumerate(cfg.eval.sweeps):
        if sweep.source not in (None, cfg.name):
            raise ValueError(
                f"eval.sweeps.{i}.source: {sweep.source!r} is not a model of this run; "
                f"expected None (white-box) or {cfg.name!r}, the one model it trains"
            )
    names = [s.name for s in cfg.eval.sweeps]
    if len(set(names)) != len(names) or "clean" in names:
        raise ValueError(f"eval.sweeps: names must be unique and not 'clean', got {names}")

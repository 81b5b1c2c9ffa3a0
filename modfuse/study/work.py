"""What one unit of a study does: build and train a model for a seed, or evaluate a trained
one under every attack and threat model it can be attacked on."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Subset

from modfuse._registry import ATTACKS
from modfuse.attacks.base import Attack
from modfuse.config.schema import TrainConfig
from modfuse.config.specs import encoder_value, spec_value
from modfuse.data.cache import FeatureCache
from modfuse.data.split import holdout
from modfuse.encoders.base import is_frozen
from modfuse.io.tensor_files import atomic_write_json, read_json
from modfuse.model.fusion_model import FusionModel
from modfuse.robustness import Sweep, robustness_sweep
from modfuse.study.schema import StudyConfig
from modfuse.training.trainer import Trainer

__all__ = ["build_model", "evaluate_model", "sweeps_for", "train_model"]


def build_model(cfg: StudyConfig, name: str, seed: int, num_classes: int) -> FusionModel:
    """Model ``name`` for ``seed``: its head from ``seed``; its encoders from ``seed`` too
    when the study varies them ("encoders" in ``vary``), else from the first seed."""
    spec = cfg.models[name]
    args = {
        "encoders": {m: encoder_value(cfg.encoders[m]) for m in spec.modalities},
        "fusion": spec_value(spec.fusion),
        "num_classes": num_classes,
        "fusion_dim": spec.fusion_dim,
        "missing": spec.missing,
    }
    torch.manual_seed(seed)
    model = FusionModel(**args)
    encoder_seed = seed if "encoders" in cfg.vary else cfg.seeds[0]
    if encoder_seed != seed:
        torch.manual_seed(encoder_seed)
        model.encoders.load_state_dict(FusionModel(**args).encoders.state_dict())
    return model


def train_model(
    cfg: StudyConfig,
    name: str,
    seed: int,
    train: Any,
    folder: Path,
    cache_root: Path,
    num_classes: int,
) -> None:
    """Train model ``name`` for ``seed`` into ``folder`` (``model/``, ``history.json``),
    continuing from the unit's last checkpoint when there is one. A model whose encoders are
    all frozen (and that is not trained adversarially) trains its head on features cached once
    in ``cache_root`` for every model and seed that shares them."""
    t = TrainConfig.model_validate({**cfg.train.model_dump(), **cfg.models[name].train})
    model = build_model(cfg, name, seed, num_classes)
    trainer = Trainer(
        model,
        **t.trainer_arguments(),
        seed=seed,
        run_dir=folder / "run",
        progress=False,
        device=cfg.device,
    )
    data = train
    if t.adversarial is None and all(is_frozen(e) for e in model.encoders.values()):
        cache = FeatureCache(cache_root, batch_size=cfg.evaluation.batch_size, progress=False)
        data = cache.features(model, train)
    fit, val = holdout(data, t.val_fraction, seed)  # the epoch is picked on training data
    history = trainer.fit(fit, val, resume=True)
    model.save(folder / "model")
    atomic_write_json(folder / "history.json", history)


def _takes_seed(spec: dict) -> bool:
    factory = ATTACKS.resolve(spec).factory
    if isinstance(factory, type) and issubclass(factory, Attack):
        return True  # the base class takes the seed of every built-in attack
    try:
        return "seed" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False


def sweeps_for(cfg: StudyConfig, input_keys: list[str], seed: int) -> list[tuple[Sweep, str, str]]:
    """``(sweep, threat model, attack)`` for every attack and threat model of the study that
    moves a key the model takes (an attacker on keys it does not read cannot touch it). An
    attack that draws random numbers and names no seed gets the study's seed."""
    threats = cfg.threat_models()
    found = []
    for a in cfg.evaluation.attacks:
        for t in threats:
            if a.threat_models is not None and t.name not in a.threat_models:
                continue
            targets = [k for k in t.targets if k in input_keys]
            if not targets:
                continue
            spec = {**a.attack.as_spec(), "targets": targets}
            if t.region is not None:
                spec["region"] = t.region
            if "seed" not in spec and _takes_seed(spec):
                spec["seed"] = seed
            found.append((Sweep(f"{a.name}@{t.name}", spec, list(a.strengths)), t.name, a.name))
    return found


def evaluate_model(cfg: StudyConfig, name: str, seed: int, test: Any, trained: Path,
                   folder: Path) -> dict[str, Any]:
    """Sweep the trained model on ``test``; the rows (with ``seed``, ``threat`` and
    ``attack_name``), flags, checks (per set of items swept) and baselines, also written to
    ``folder/rows.json``. Attacks with ``items`` are swept on the first ``items`` test items
    (their rows say so in ``n``). A sweep killed midway continues from its resume file."""
    model = FusionModel.load(trained / "model")
    if cfg.device is not None:
        model.to(torch.device(cfg.device))
    planned = sweeps_for(cfg, model.input_keys(), seed)
    items = {a.name: a.items for a in cfg.evaluation.attacks}
    groups: dict[int | None, list[tuple[Sweep, str, str]]] = {None: []}
    for p in planned:  # attacks on a stated number of items are swept on those items alone
        groups.setdefault(items[p[2]], []).append(p)
    where = {s.name: (t, a) for s, t, a in planned}
    found: dict[str, Any] = {"rows": [], "flags": [], "checks": {}, "baselines": {}}
    for n, group in groups.items():
        data = test if n is None else Subset(test, range(min(n, len(test))))
        label = "all items" if n is None else f"the first {len(data)} items"
        result = robustness_sweep(
            {name: model},
            data,
            [s for s, _, _ in group],
            batch_size=cfg.evaluation.batch_size,
            progress=False,
            resume_file=folder / f"sweep-{n or 'all'}.resume.json",
        )
        for r in result:  # in the sweep's order: clean first (once: from all items)
            threat, attack = where.get(r["perturbation"], ("", "clean"))
            if attack != "clean" or n is None:
                found["rows"].append({**r, "seed": seed, "threat": threat, "attack_name": attack})
        found["flags"] += [{**f, "items": label} for f in result.flags or []]
        found["checks"][label] = result.checks or []
        if n is None:
            found["baselines"] = result.baselines or {}
    found["history"] = read_json(trained / "history.json")
    atomic_write_json(folder / "rows.json", found)
    return found

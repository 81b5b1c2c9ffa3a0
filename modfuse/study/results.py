"""A study's numbers: seed means, the model x modality (single-source) table and the verdict
of every hypothesis, all computed from the per-seed rows."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from modfuse.study.schema import HypothesisConfig, StudyConfig

__all__ = ["accuracy_of", "judge", "seed_means", "single_source_table"]

Row = Mapping[str, Any]


def _point(row: Row) -> tuple:
    return (row["model"], row["attack_name"], row["threat"], float(row["strength"]))


def seed_means(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """One row per (model, attack, threat, strength): the mean accuracy over seeds, its
    sample standard deviation (0 for one seed) and the number of seeds."""
    by: dict[tuple, list[Row]] = {}
    for r in rows:
        by.setdefault(_point(r), []).append(r)
    out = []
    for (model, attack, threat, strength), group in by.items():
        accs = [float(r["accuracy"]) for r in group]
        out.append(
            {
                "model": model,
                "seed": "mean",
                "threat": threat,
                "attack_name": attack,
                "strength": strength,
                "accuracy": statistics.fmean(accs),
                "accuracy_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                "seeds": len(accs),
            }
        )
    return out


def accuracy_of(means: Sequence[Row], model: str, attack: str, threat: str | None,
                strength: float, per_seed: Sequence[Row] | None = None) -> list[float] | None:
    """The accuracy of ``model`` at a point: the seed mean (a one-item list), or with
    ``per_seed`` each seed's, in seed order. A model that does not read the threat model's
    keys is not attacked there: its clean accuracy stands. None when the model has no clean
    row either."""
    rows = per_seed if per_seed is not None else means
    hit = [r for r in rows if _point(r) == (model, attack, threat or "", float(strength))]
    if not hit and attack != "clean":
        hit = [r for r in rows if _point(r) == (model, "clean", "", 0.0)]
    if not hit:
        return None
    hit = sorted(hit, key=lambda r: str(r["seed"]))
    return [float(r["accuracy"]) for r in hit]


def judge(h: HypothesisConfig, means: Sequence[Row], rows: Sequence[Row]) -> dict[str, Any]:
    """The verdict of one hypothesis on the seed means, with the numbers and how many seeds
    agree (each seed's own difference at or above the margin)."""
    better = accuracy_of(means, h.better, h.attack, h.threat, h.strength)
    worse = accuracy_of(means, h.worse, h.attack, h.threat, h.strength)
    seeds_b = accuracy_of(means, h.better, h.attack, h.threat, h.strength, per_seed=rows) or []
    seeds_w = accuracy_of(means, h.worse, h.attack, h.threat, h.strength, per_seed=rows) or []
    where = "clean" if h.attack == "clean" else f"{h.attack} on {h.threat} at {h.strength:g}"
    claim = f"{h.better} beats {h.worse} ({where}) by at least {h.margin:g}"
    if better is None or worse is None:
        return {"name": h.name, "claim": claim, "verdict": "not evaluated",
                "detail": "no rows for this point (check the attack, threat and strength)"}
    gain = better[0] - worse[0]
    agree = sum(b - w >= h.margin for b, w in zip(seeds_b, seeds_w))
    verdict = "holds" if gain >= h.margin else "does not hold"
    return {
        "name": h.name,
        "claim": claim,
        "verdict": verdict,
        "better": better[0],
        "worse": worse[0],
        "gain": gain,
        "margin": h.margin,
        "seeds_agreeing": agree,
        "seeds": len(seeds_b),
        "detail": f"{better[0]:.3f} vs {worse[0]:.3f}, gain {gain:+.3f}; "
        f"{agree} of {len(seeds_b)} seeds at or above the margin",
    }


def single_source_table(cfg: StudyConfig, means: Sequence[Row]) -> list[dict[str, Any]]:
    """Per model, attack and strength: the accuracy when each modality alone is attacked
    (None where the model does not read it) and the single-source robust accuracy, the
    minimum over the modalities it reads (Yang et al., CVPR 2021)."""
    out = []
    modalities = sorted(cfg.encoders)
    for a in cfg.evaluation.attacks:
        for strength in a.strengths:
            for name, spec in cfg.models.items():
                cells: dict[str, float | None] = {}
                for m in modalities:
                    got = (accuracy_of(means, name, a.name, m, strength)
                           if m in spec.modalities else None)
                    cells[m] = got[0] if got else None
                read = [v for v in cells.values() if v is not None]
                out.append({"model": name, "attack": a.name, "strength": float(strength),
                            "by_modality": cells, "single_source": min(read) if read else None})
    return out

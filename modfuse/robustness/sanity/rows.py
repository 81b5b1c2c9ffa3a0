"""Sanity checks read from a sweep's rows, and the status of every check.

Rows are compared only within a group: every key beyond the measurement and metadata columns
(``world``, ``seed``...) splits them, so rows of two worlds or two seeds are never mixed.
Seed means (``seed == "mean"``) are derived rows and are not checked again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from modfuse.robustness.sanity.flags import CHECKS, RENAMED, Flag, noise_margin

#: Row keys that are measurements or metadata; any other key names a group of rows.
ROW_KEYS = frozenset(
    (
        "model perturbation attack targets strength source correct n accuracy ci_low ci_high "
        "norm unit iterative stronger_when accuracy_std seeds"
    ).split()
)
#: Metadata of rows written before rows carried it (older results.json files): read by name.
_LEGACY = {
    "FGSM": {"norm": "linf", "unit": "linf", "iterative": False},
    "PGD": {"norm": "linf", "unit": "linf", "iterative": True},
    "DropModality": {"norm": "none", "unit": "none", "iterative": False},
}

Coverage = dict[str, tuple[bool, str]]


def _meta(row: Mapping[str, Any]) -> dict[str, Any]:
    legacy = _LEGACY.get(row.get("attack", ""), {})
    unit = row.get("unit", legacy.get("unit", "unknown"))
    return {
        "norm": row.get("norm", legacy.get("norm", "none")),
        "unit": unit,
        "iterative": bool(row.get("iterative", legacy.get("iterative", False))),
        "stronger_when": row.get("stronger_when") or ("lower" if unit == "snr_db" else "higher"),
    }


def _group(row: Mapping[str, Any]) -> tuple:
    return tuple((k, str(row[k])) for k in sorted(row) if k not in ROW_KEYS)


def _label(group: tuple) -> str:
    return "[" + ", ".join(f"{k}={v}" for k, v in group) + "] " if group else ""


def _at(row: Mapping[str, Any]) -> str:
    return "clean" if row["perturbation"] == "clean" else f"{row['strength']:g}"


def _rising(rows: Sequence[Mapping[str, Any]]) -> tuple[list[Flag], tuple[bool, str]]:
    clean = {(_group(r), r["model"]): r for r in rows if r["perturbation"] == "clean"}
    sweeps: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in rows:
        if r["perturbation"] != "clean":
            sweeps.setdefault((_group(r), r["model"], r["perturbation"]), []).append(r)
    flags, checked = [], 0
    for (group, model, pert), pts in sweeps.items():
        meta = _meta(pts[0])
        if meta["unit"] == "none":
            continue  # no strength axis (a dropped modality)
        checked += 1
        # Weakest first: a lower SNR is more noise, so an SNR axis is read from the top down.
        pts = sorted(pts, key=lambda r: r["strength"], reverse=meta["stronger_when"] == "lower")
        seq = ([clean[(group, model)]] if (group, model) in clean else []) + pts
        for a, b in zip(seq, seq[1:]):
            if b["accuracy"] > a["accuracy"] + noise_margin(a["accuracy"], a["n"]):
                detail = (
                    f"{_label(group)}{pert}: {a['accuracy']:.3f} at {_at(a)} -> "
                    f"{b['accuracy']:.3f} at {_at(b)} ({meta['unit']})"
                )
                flags.append(Flag("accuracy_rises_with_strength", model, detail))
                break
    if checked:
        return flags, (True, f"{checked} swept perturbation(s) read along their strength axis")
    return flags, (False, "no perturbation with a strength axis was swept")


def _iterative(rows: Sequence[Mapping[str, Any]]) -> tuple[list[Flag], tuple[bool, str]]:
    same: dict[tuple, dict[bool, list[Mapping[str, Any]]]] = {}
    for r in rows:
        meta = _meta(r)
        if r["perturbation"] == "clean" or meta["norm"] not in ("linf", "l2"):
            continue
        key: tuple[Any, ...] = (
            _group(r),
            r["model"],
            meta["norm"],
            r["targets"],
            r.get("source") or "",
        )
        key += (round(float(r["strength"]), 8),)
        same.setdefault(key, {True: [], False: []})[meta["iterative"]].append(r)
    flags, pairs = [], 0
    for (group, model, norm, targets, source, eps), found in same.items():
        if not found[True] or not found[False] or eps <= 0:
            continue
        single = min(found[False], key=lambda r: r["accuracy"])  # the strongest single step
        for r in found[True]:
            pairs += 1
            if r["accuracy"] > single["accuracy"] + noise_margin(single["accuracy"], single["n"]):
                where = f"eps {eps:g} ({norm}) on {targets}" + (f" from {source}" if source else "")
                detail = (
                    f"{_label(group)}{where}: {r['perturbation']} ({r['attack']}) "
                    f"{r['accuracy']:.3f} vs {single['perturbation']} ({single['attack']}) "
                    f"{single['accuracy']:.3f}"
                )
                flags.append(Flag("iterative_weaker_than_single_step", model, detail))
    if pairs:
        return flags, (True, f"{pairs} iterative attack point(s) compared with a single step")
    return flags, (
        False,
        "no iterative attack was swept at the same norm, targets, source and eps as a "
        "single-step gradient attack",
    )


def _unmoved(rows: Sequence[Mapping[str, Any]]) -> tuple[list[Flag], tuple[bool, str]]:
    """A model whose accuracy is exactly the clean one at every perturbed point (of at least
    two points), in each group of rows."""
    clean = {(_group(r), r["model"]): r for r in rows if r["perturbation"] == "clean"}
    moved: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in rows:
        if r["perturbation"] != "clean" and (_group(r), r["model"]) in clean:
            moved.setdefault((_group(r), r["model"]), []).append(r)
    flags, checked = [], 0
    for (group, model), pts in moved.items():
        if len(pts) < 2:
            continue  # one point may honestly leave every answer as it was
        checked += 1
        base = clean[(group, model)]
        if all(r["accuracy"] == base["accuracy"] and r["n"] == base["n"] for r in pts):
            detail = (
                f"{_label(group)}{base['accuracy']:.3f} clean and at all {len(pts)} perturbed "
                f"points ({', '.join(sorted({r['perturbation'] for r in pts}))})"
            )
            flags.append(Flag("accuracy_unmoved", model, detail))
    if checked:
        return flags, (True, f"{checked} model(s) compared with their clean accuracy")
    return flags, (False, "no model was scored at two or more perturbed points")


def row_checks(rows: Sequence[Mapping[str, Any]]) -> tuple[list[Flag], Coverage]:
    """The flags of :func:`check_rows`, and for each row check whether the rows gave it
    anything to compare, and what (or why not).

    Examples:
        >>> row_checks([])[1]["iterative_weaker_than_single_step"][0]
        False
    """
    rows = [r for r in rows if r.get("seed") != "mean"]
    rising, rising_cov = _rising(rows)
    weaker, weaker_cov = _iterative(rows)
    cov = {"accuracy_rises_with_strength": rising_cov}
    cov["iterative_weaker_than_single_step"] = weaker_cov
    unmoved, cov["accuracy_unmoved"] = _unmoved(rows)
    return rising + weaker + unmoved, cov


def check_rows(rows: Sequence[Mapping[str, Any]]) -> list[Flag]:
    """Flags visible in a sweep's rows: accuracy rising with strength (read along each
    attack's ``stronger_when``), an iterative attack weaker than a single-step one of the
    same norm, targets, source and eps. Rows without a strength (unit "none") are skipped.

    Examples:
        >>> points = [("clean", "none", 0.0, 0.9), ("b", "sigma", 1.0, 0.5),
        ...           ("b", "sigma", 2.0, 0.8)]
        >>> rows = [{"model": "m", "perturbation": p, "attack": "GaussianBlur", "unit": u,
        ...          "norm": "none", "targets": "fg", "strength": s, "accuracy": acc, "n": 500}
        ...         for p, u, s, acc in points]
        >>> [f.check for f in check_rows(rows)]
        ['accuracy_rises_with_strength']
    """
    return row_checks(rows)[0]


def check_statuses(flags: Sequence[Mapping[str, str]], coverage: Coverage) -> list[dict[str, str]]:
    """One entry per check of :data:`modfuse.robustness.sanity.CHECKS`: ``{"check",
    "status", "detail"}`` with status "flagged" (a flag was raised), "passed" (it ran,
    nothing raised) or "not run" (``coverage`` says why). A check absent from ``coverage``
    did not run.

    Examples:
        >>> s = check_statuses([], {"stochastic_model": (True, "2 models")})
        >>> [(c["check"], c["status"]) for c in s][3]
        ('stochastic_model', 'passed')
        >>> s[0]["status"], s[0]["detail"]
        ('not run', 'not run')
    """
    out = []
    for name in CHECKS:
        raised = sum(RENAMED.get(f["check"], f["check"]) == name for f in flags)
        ran, what = coverage.get(name, (False, "not run"))
        if raised:
            status, detail = "flagged", f"{raised} flag(s); {what}"
        else:
            status, detail = ("passed" if ran else "not run"), what
        out.append({"check": name, "status": status, "detail": detail})
    return out

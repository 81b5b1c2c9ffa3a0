"""Tables of a report: results.csv, Markdown accuracy tables, strengths in their units, and
means over seeds. Re-exported by :mod:`modfuse.reporting.report`.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from modfuse.robustness.sanity.rows import ROW_KEYS
from modfuse.robustness.stats import wilson_interval

#: Columns of results.csv, in order (rows may carry more, e.g. ``world``, appended after).
COLUMNS = [
    "model",
    "perturbation",
    "attack",
    "targets",
    "strength",
    "source",
    "correct",
    "n",
    "accuracy",
    "ci_low",
    "ci_high",
]
#: What identifies a cell across seeds (besides extra keys such as ``world``).
IDENTITY = ("model", "perturbation", "attack", "targets", "strength", "source")
#: Axis labels of the strength units of :class:`modfuse.attacks.base.Attack`.
UNIT_LABELS = {
    "linf": "L-inf eps",
    "l2": "L2 eps",
    "sigma": "blur sigma (px)",
    "std": "noise std",
    "snr_db": "SNR (dB)",
    "rate": "rate",
    "none": "no strength",
}
#: Units of rows written before rows carried them (older results.json files), by attack name.
_LEGACY_UNITS = {"FGSM": "linf", "PGD": "linf", "DropModality": "none"}


def unit_of(row: Mapping[str, Any]) -> str:
    """The unit of a row's strength ("" when unknown)."""
    return row.get("unit") or _LEGACY_UNITS.get(row.get("attack", ""), "")


def format_strength(unit: str, value: float) -> str:
    """Strengths as people write them: an L-inf eps in 1/255 steps, anything else plain (an
    L2 eps is never a /255 fraction).

    Examples:
        >>> format_strength("linf", 8 / 255), format_strength("l2", 8 / 255)
        ('8/255', '0.0313725')
        >>> format_strength("sigma", 2.0)
        '2'
    """
    if unit == "linf" and value and abs(value * 255 - round(value * 255)) < 1e-6:
        return f"{round(value * 255)}/255"
    return f"{value:g}"


def csv_text(rows: Sequence[Mapping[str, Any]]) -> str:
    """results.csv: :data:`COLUMNS` after the extra keys (``seed``, ``world``...)."""
    extra = sorted({k for r in rows for k in r} - set(COLUMNS))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=extra + COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def seed_means(
    rows: Sequence[Mapping[str, Any]], keys: Sequence[str] = IDENTITY
) -> list[dict[str, Any]]:
    """One mean row per cell (``keys`` and every extra key such as ``world``) of rows that
    carry a ``seed``: ``seed="mean"``, ``accuracy`` the mean over seeds, ``accuracy_std`` their
    sample standard deviation (0 for one seed), ``seeds`` the count, ``correct`` and ``n``
    summed, and the Wilson interval of the pooled counts.

    Examples:
        >>> rows = [{"model": "m", "perturbation": "clean", "strength": 0.0, "seed": s,
        ...          "correct": c, "n": 100, "accuracy": c / 100} for s, c in ((0, 80), (1, 84))]
        >>> m = seed_means(rows)[0]
        >>> m["seed"], round(m["accuracy"], 4), round(m["accuracy_std"], 4), m["seeds"]
        ('mean', 0.82, 0.0283, 2)
        >>> m["correct"], m["n"]
        (164, 200)
    """
    seeded = [r for r in rows if "seed" in r and r["seed"] != "mean"]
    extra = sorted({k for r in seeded for k in r} - ROW_KEYS - {"seed"} - set(keys))
    cells: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in seeded:
        cells.setdefault(tuple(str(r.get(k)) for k in (*extra, *keys)), []).append(r)
    out = []
    for found in cells.values():
        accs = [float(r["accuracy"]) for r in found]
        correct, n = sum(r["correct"] for r in found), sum(r["n"] for r in found)
        lo, hi = wilson_interval(correct, n)
        row = {k: v for k, v in found[0].items() if k not in ("ci_low", "ci_high")}
        row.update(
            seed="mean",
            accuracy=statistics.fmean(accs),
            accuracy_std=statistics.stdev(accs) if len(accs) > 1 else 0.0,
            seeds=len(found),
            correct=correct,
            n=n,
            ci_low=lo,
            ci_high=hi,
        )
        out.append(row)
    return out


def with_seed_means(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` plus their :func:`seed_means` when they carry seeds and no means yet."""
    out = [dict(r) for r in rows]
    if any("seed" in r for r in out) and not any(r.get("seed") == "mean" for r in out):
        out += seed_means(out)
    return out


def _cell(row: Mapping[str, Any]) -> str:
    if row.get("seed") == "mean":
        return f"{row['accuracy']:.3f} ± {row.get('accuracy_std', 0.0):.3f}"
    return f"{row['accuracy']:.3f}"


#: Per group value of ``group_by`` (None: every group), what :func:`class_baselines` gives.
Baselines = Mapping[Any, Mapping[str, Any]]


def _baseline_rows(base: Mapping[str, Any] | None, columns: int) -> list[str]:
    """The majority-class and chance rows of a table (every column the same value)."""
    if base is None:
        unknown = ["not known (no class counts came with these rows)"] + [""] * (columns - 1)
        return ["| *baselines* | " + " | ".join(unknown) + " |"]
    majority = " | ".join([f"{base['majority']:.3f}"] * columns)
    chance = " | ".join([f"{base['chance']:.3f}"] * columns)
    return [
        f"| *majority class ({base['majority_class']})* | {majority} |",
        f"| *uniform chance (1/{base['classes']})* | {chance} |",
    ]


def _tables(
    rows: Sequence[Mapping[str, Any]], by: Sequence[str], baselines: Baselines | None = None
) -> list[str]:
    out = []
    baselines = baselines or {}
    groups = list(dict.fromkeys(tuple(r.get(k) for k in by) for r in rows))
    groups.sort(key=str)
    for g in groups:
        sub = [r for r in rows if tuple(r.get(k) for k in by) == g]
        where = ", ".join(f"{k} = {v}" for k, v in zip(by, g))
        clean = {r["model"]: r for r in sub if r["perturbation"] == "clean"}
        perts = [p for p in dict.fromkeys(r["perturbation"] for r in sub) if p != "clean"]
        models = list(dict.fromkeys(r["model"] for r in sub))
        base = baselines.get(g[0] if g else None, baselines.get(None))
        if not perts:
            out += ["### clean" + (f" ({where})" if where else ""), ""]
            out += ["| model | clean |", "|---|---|"]
            out += [f"| {m} | {_cell(clean[m])} |" for m in models if m in clean]
            out += _baseline_rows(base, 1) + [""]
        for p in perts:
            prow = [r for r in sub if r["perturbation"] == p]
            strengths = list(dict.fromkeys(r["strength"] for r in prow))
            first = prow[0]
            unit = unit_of(first)
            title = f"{p}: {first['attack']} on {first['targets'] or '-'}"
            if unit and unit != "none":
                title += f", {UNIT_LABELS.get(unit, unit)}"
            if first.get("source"):
                title += f", transferred from {first['source']}"
            out += [f"### {title}" + (f" ({where})" if where else ""), ""]
            heads = " | ".join(format_strength(unit, v) for v in strengths)
            out.append(f"| model | clean | {heads} |")
            out.append("|---|---|" + "---|" * len(strengths))
            for m in models:
                cells = [_cell(clean[m]) if m in clean else "-"]
                for s in strengths:
                    hit = [r for r in prow if r["model"] == m and r["strength"] == s]
                    cells.append(_cell(hit[0]) if hit else "-")
                out.append(f"| {m} | " + " | ".join(cells) + " |")
            out += _baseline_rows(base, 1 + len(strengths)) + [""]
    return out


def accuracy_tables(
    rows: Sequence[Mapping[str, Any]],
    group_by: str | None = None,
    baselines: Baselines | None = None,
) -> str:
    """Markdown: one table per (group, perturbation); models as rows, strengths as columns,
    and below the models the majority-class and uniform-chance baselines of the items
    (``baselines``: per value of ``group_by``, or under None for every group; a table whose
    baselines are not known says so). No rows: a sentence saying that nothing was evaluated.

    Rows of several seeds are shown as means ``0.812 ± 0.013`` (mean ± sample std over
    seeds; computed with :func:`seed_means` unless the rows hold them), followed by one table
    per seed.

    Examples:
        >>> rows = [{"model": "m", "perturbation": "clean", "attack": "none", "targets": "",
        ...          "strength": 0.0, "seed": s, "correct": c, "n": 100, "accuracy": c / 100}
        ...         for s, c in ((0, 80), (1, 84))]
        >>> "| m | 0.820 ± 0.028 |" in accuracy_tables(rows)
        True
    """
    by = [group_by] if group_by else []
    if not rows:
        return "No rows: nothing was evaluated, so there is no accuracy to report."
    rows = with_seed_means(rows)
    means = [r for r in rows if r.get("seed") == "mean"]
    if not means:
        n = rows[0]["n"] if rows else 0
        foot = f"Accuracies on n = {n} test items per cell; results.csv has 95% Wilson intervals."
        return "\n".join(_tables(rows, by, baselines) + [foot])
    per_seed = [r for r in rows if r.get("seed") != "mean"]
    seeds = sorted({str(r["seed"]) for r in per_seed})
    out = _tables(means, by, baselines)
    out.append(
        f"Mean ± sample standard deviation over {len(seeds)} seed(s) ({', '.join(seeds)}); "
        "results.csv has every seed's row and the 95% Wilson interval of the pooled counts."
    )
    out += ["", "### Per seed", ""] + _tables(per_seed, [*by, "seed"], baselines)
    return "\n".join(out)

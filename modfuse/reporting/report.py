"""Reports: results as CSV / JSON / Markdown tables, PNG plots, and a manifest.

Every file is written atomically, so a report folder never holds half a file. A report states
the status of every sanity check (passed, flagged, or not run and why): it never says that a
check passed when it did not run. Tables are in :mod:`modfuse.reporting.tables`, plots in
:mod:`modfuse.reporting.plots`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from modfuse.io.tensor_files import atomic_write_bytes, atomic_write_json
from modfuse.reporting.manifest import environment
from modfuse.reporting.plots import plot_feature_shift, plot_sweeps, plot_training_curves
from modfuse.reporting.tables import (
    COLUMNS,
    Baselines,
    accuracy_tables,
    csv_text,
    format_strength,
    seed_means,
    with_seed_means,
)
from modfuse.robustness.result import SweepResult
from modfuse.robustness.sanity.flags import RENAMED
from modfuse.robustness.sanity.probes import PROBES
from modfuse.robustness.sanity.rows import check_statuses, row_checks

__all__ = [
    "COLUMNS",
    "accuracy_tables",
    "environment",
    "format_strength",
    "read_baselines",
    "sanity_summary",
    "seed_means",
    "write_report",
]


def _section(
    title: str, intro: str, columns: list[str], rows: Sequence[Sequence[object]]
) -> list[str]:
    """A Markdown section: heading, a sentence, and a table."""
    lines = [
        f"## {title}",
        "",
        intro,
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return lines + [""]


def sanity_summary(
    rows: Sequence[Mapping[str, Any]],
    flags: Sequence[Mapping[str, str]] | None = None,
    checks: Sequence[Mapping[str, str]] | None = None,
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The flags and check statuses a report shows.

    Given ``checks`` (those of a sweep, or read back from results.json), they are kept as
    they are. Without them, the row checks are computed again from ``rows`` and the model
    probes are "not run" (a report built from rows alone cannot have probed the models),
    unless one of ``flags`` says they ran and failed.

    Examples:
        >>> flags, checks = sanity_summary([])
        >>> flags, sorted({c["status"] for c in checks})
        ([], ['not run'])
    """
    shown = [{**f, "check": RENAMED.get(f["check"], f["check"])} for f in flags or []]
    if checks is not None:
        return shown, [dict(c) for c in checks]
    found, coverage = row_checks(rows)
    seen = {(f["check"], f["model"], f["detail"]) for f in shown}
    shown += [f.as_dict() for f in found if (f.check, f.model, f.detail) not in seen]
    for probe in PROBES:
        coverage[probe] = (False, "the report was built from rows only")
    return shown, check_statuses(shown, coverage)


def _sanity_section(flags: list[dict[str, str]], checks: list[dict[str, str]]) -> list[str]:
    ran = [c for c in checks if c["status"] != "not run"]
    if flags:
        lead = f"**{len(flags)} flag(s): read these numbers with care.**"
    else:
        lead = (
            f"No flags from the {len(ran)} of {len(checks)} checks that ran; a check that did "
            "not run says nothing about these numbers."
        )
    md = ["## Sanity checks", "", lead, "", "| check | status | what it ran on, or why not |"]
    md.append("|---|---|---|")
    md += [f"| {c['check']} | {c['status']} | {c['detail']} |" for c in checks]
    if flags:
        md += [
            "",
            "| check | model | what was seen | what it means | what to do |",
            "|---|---|---|---|---|",
        ]
        md += [
            f"| {f['check']} | {f['model']} | {f['detail']} | {f.get('meaning', '')} | "
            f"{f.get('action', '')} |"
            for f in flags
        ]
    return md + [""]


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _training_section(
    out: Path, histories: Mapping[str, Sequence[Mapping[str, float]]]
) -> list[str]:
    histories = {k: list(v) for k, v in histories.items() if v}
    if not histories:
        return []
    rows = []
    for name, h in histories.items():
        vals = [r["val_acc"] for r in h if _finite(r.get("val_acc"))]
        best = f"{max(vals):.3f}" if vals else "-"
        last = h[-1]
        rows.append([name, len(h), f"{last['train_loss']:.4f}", f"{last['train_acc']:.3f}", best])
    md = _section(
        "Training curves",
        "Per epoch: training loss, and training and validation accuracy (epochs without a "
        "validation accuracy are left out).",
        ["model", "epochs", "last train loss", "last train acc", "best val acc"],
        rows,
    )
    return md + [f"![training curves]({plot_training_curves(out, histories)})", ""]


def _checked_folder(out_dir: Any) -> Path:
    """``out_dir`` as a Path, or a TypeError naming what came (arguments in the wrong order
    give a list here)."""
    if not isinstance(out_dir, (str, os.PathLike)):
        raise TypeError(
            "write_report(out_dir, rows, ...): out_dir must be a folder path (str or Path), "
            f"got {type(out_dir).__name__}; were the arguments given in the wrong order?"
        )
    return Path(out_dir)


def read_baselines(payload: Mapping[str, Any]) -> dict[Any, dict[str, Any]] | None:
    """The baselines a results.json holds (see :func:`write_report`), None for a file written
    before results carried them."""
    found = payload.get("baselines")
    if not found:
        return None
    return {b["group"]: {k: v for k, v in b.items() if k != "group"} for b in found}


def write_report(
    out_dir: str | os.PathLike,
    rows: Sequence[Mapping[str, Any]],
    *,
    feature_shifts: Mapping[str, Mapping[str, Mapping[str, float]]] | None = None,
    reliance: Mapping[str, Mapping[str, Mapping[str, float]]] | None = None,
    manifest: Mapping[str, Any] | None = None,
    group_by: str | None = None,
    title: str = "modfuse robustness report",
    notes: str = "",
    flags: Sequence[Mapping[str, str]] | None = None,
    checks: Sequence[Mapping[str, str]] | None = None,
    histories: Mapping[str, Sequence[Mapping[str, float]]] | None = None,
    baselines: Baselines | None = None,
    per_class: Sequence[Mapping[str, Any]] | None = None,
) -> Path:
    """Write results.csv, results.json, report.md, PNG plots and manifest.json to ``out_dir``.

    Args:
        out_dir: Report folder (created).
        rows: Rows of :func:`modfuse.robustness.robustness_sweep` (may carry extra keys, such
            as ``world`` or ``seed``; rows of several seeds get their :func:`seed_means`).
        feature_shifts: ``{label: feature_shift(...)}``.
        reliance: ``{model: modality_reliance(...)}``.
        manifest: Config, seed, class map...; versions and git revision are added.
        group_by: A row key that splits tables and plots (e.g. ``"world"``).
        title: The report's heading.
        notes: Markdown placed under the heading.
        flags: Sanity-check flags; default: the ``flags`` of ``rows`` when it is the result
            of :func:`modfuse.robustness.robustness_sweep`.
        checks: The status of every sanity check; default: the ``checks`` of ``rows``, or
            else (plain rows) see :func:`sanity_summary`.
        histories: Per model, the training history :class:`modfuse.training.Trainer`
            writes to history.json (records with ``epoch``, ``train_loss``, ``train_acc``,
            ``val_acc``, ``seconds``): plotted as training_curves.png.
        baselines: Majority-class and uniform-chance accuracies shown under every accuracy
            table, per value of ``group_by`` (None: for every group); default: the
            ``baselines`` of ``rows`` when it is a sweep's result.
        per_class: Per-class counts written to results.json; default: the ``per_class`` of
            ``rows`` when it is a sweep's result.

    Returns:
        Path of report.md.

    Examples:
        >>> import tempfile
        >>> rows = [{"model": "m", "perturbation": "clean", "attack": "none", "targets": "",
        ...          "strength": 0.0, "source": "", "correct": 9, "n": 10, "accuracy": 0.9,
        ...          "ci_low": 0.6, "ci_high": 0.98}]
        >>> path = write_report(tempfile.mkdtemp(), rows)
        >>> sorted(p.name for p in path.parent.iterdir())
        ['manifest.json', 'report.md', 'results.csv', 'results.json']
        >>> "| stochastic_model | not run | the report was built from rows only |" in (
        ...     path.read_text())
        True
    """
    out = _checked_folder(out_dir)
    if not isinstance(rows, Sequence) or isinstance(rows, (str, bytes)):
        raise TypeError(
            "write_report(out_dir, rows, ...): rows must be a sequence of row dicts (what "
            f"robustness_sweep returns), got {type(rows).__name__}"
        )
    if isinstance(rows, SweepResult):
        if baselines is None and rows.baselines is not None:
            baselines = {None: rows.baselines}
        if per_class is None:
            per_class = rows.per_class
    out.mkdir(parents=True, exist_ok=True)
    flags, checks = sanity_summary(
        rows,
        flags if flags is not None or not isinstance(rows, SweepResult) else rows.flags,
        checks if checks is not None or not isinstance(rows, SweepResult) else rows.checks,
    )
    rows = with_seed_means(rows)
    atomic_write_bytes(out / "results.csv", csv_text(rows).encode())
    payload = {
        "rows": rows,
        "feature_shift": feature_shifts or {},
        "reliance": reliance or {},
        "flags": flags,
        "checks": checks,
        "baselines": [{"group": g, **b} for g, b in (baselines or {}).items()],
        "per_class": list(per_class or []),
    }
    atomic_write_json(out / "results.json", payload)
    atomic_write_json(out / "manifest.json", {**(manifest or {}), **environment()})
    swept = any(r["perturbation"] != "clean" for r in rows)
    plots = plot_sweeps(out, rows, group_by) if swept else []
    md = [f"# {title}", ""]
    if notes:
        md += [notes, ""]
    md += _sanity_section(flags, checks)
    md += ["## Accuracy under perturbation", "", accuracy_tables(rows, group_by, baselines), ""]
    md += [f"![{p}]({p})" for p in plots] + [""]
    if histories:
        md += _training_section(out, histories)
    if feature_shifts:
        md += _section(
            "Feature shift",
            "Mean relative L2 distance `||f' - f|| / ||f||` and cosine distance between clean "
            "and perturbed features, per modality.",
            ["perturbation", "modality", "relative L2", "cosine distance"],
            [
                [label, m, f"{v['relative_l2']:.4f}", f"{v['cosine_distance']:.4f}"]
                for label, shift in feature_shifts.items()
                for m, v in shift.items()
            ],
        )
        md += [f"![feature shift]({plot_feature_shift(out, feature_shifts)})", ""]
    if reliance:
        md += _section(
            "Modality reliance",
            "Accuracy drop when a modality's features are replaced by their mean, and its "
            "fusion branch's share of the weight norm.",
            ["model", "modality", "accuracy drop", "weight norm share"],
            [
                [model, m, f"{v['accuracy_drop']:.3f}", f"{v['norm_share']:.3f}"]
                for model, rel in reliance.items()
                for m, v in rel.items()
            ],
        )
    atomic_write_bytes(out / "report.md", "\n".join(md).encode())
    return out / "report.md"

"""Reports: results as CSV / JSON / Markdown tables, PNG plots, and a manifest.

Every file is written atomically, so a report folder never holds half a file.
"""

from __future__ import annotations

import csv
import io
import os
import platform
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from modfuse.checkpoint import atomic_write_bytes, atomic_write_json

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


def environment() -> dict[str, Any]:
    """Versions and revision that a result depends on."""
    import torch

    import modfuse

    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "modfuse": modfuse.__version__,
        "platform": platform.platform(),
    }
    for name in ("torchvision", "timm", "numpy"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = None
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).parent,
        )
        git = rev.stdout.strip() if rev.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        git = None
    return {"versions": versions, "git_revision": git, "argv": sys.argv}


def format_strength(attack: str, value: float) -> str:
    """Strengths as people write them: gradient attacks' eps in 1/255 steps, others plain.

    Examples:
        >>> format_strength("FGSM", 8 / 255), format_strength("GaussianBlur", 2.0)
        ('8/255', '2')
    """
    if attack in ("FGSM", "PGD") and value and abs(value * 255 - round(value * 255)) < 1e-6:
        return f"{round(value * 255)}/255"
    return f"{value:g}"


def _csv(rows: Sequence[Mapping[str, Any]]) -> str:
    extra = sorted({k for r in rows for k in r} - set(COLUMNS))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=extra + COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def accuracy_tables(rows: Sequence[Mapping[str, Any]], group_by: str | None = None) -> str:
    """Markdown: one table per (group, perturbation); models as rows, strengths as columns."""
    out = []
    groups = sorted({r.get(group_by) for r in rows}, key=str) if group_by else [None]
    for g in groups:
        sub = [r for r in rows if group_by is None or r.get(group_by) == g]
        clean = {r["model"]: r for r in sub if r["perturbation"] == "clean"}
        perts = [p for p in dict.fromkeys(r["perturbation"] for r in sub) if p != "clean"]
        models = list(dict.fromkeys(r["model"] for r in sub))
        for p in perts:
            prow = [r for r in sub if r["perturbation"] == p]
            strengths = list(dict.fromkeys(r["strength"] for r in prow))
            first = prow[0]
            title = f"{p}: {first['attack']} on {first['targets'] or '-'}"
            if first.get("source"):
                title += f", transferred from {first['source']}"
            out.append(f"### {title}" + (f" ({group_by} = {g})" if group_by else ""))
            out.append("")
            heads = " | ".join(format_strength(first["attack"], v) for v in strengths)
            out.append(f"| model | clean | {heads} |")
            out.append("|---|---|" + "---|" * len(strengths))
            for m in models:
                cells = [f"{clean[m]['accuracy']:.3f}" if m in clean else "-"]
                for s in strengths:
                    hit = [r for r in prow if r["model"] == m and r["strength"] == s]
                    cells.append(f"{hit[0]['accuracy']:.3f}" if hit else "-")
                out.append(f"| {m} | " + " | ".join(cells) + " |")
            out.append("")
    n = rows[0]["n"] if rows else 0
    out.append(f"Accuracies on n = {n} test items per cell; results.csv has 95% Wilson intervals.")
    return "\n".join(out)


def _plot_sweeps(
    out_dir: Path, rows: Sequence[Mapping[str, Any]], group_by: str | None
) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    perts = [p for p in dict.fromkeys(r["perturbation"] for r in rows) if p != "clean"]
    groups = sorted({r.get(group_by) for r in rows}, key=str) if group_by else [None]
    for p in perts:
        fig, axes = plt.subplots(1, len(groups), figsize=(4.6 * len(groups), 3.6), squeeze=False)
        for ax, g in zip(axes[0], groups):
            sub = [r for r in rows if group_by is None or r.get(group_by) == g]
            prow = [r for r in sub if r["perturbation"] == p]
            if not prow:
                continue
            for m in dict.fromkeys(r["model"] for r in prow):
                pts = [r for r in sub if r["model"] == m and r["perturbation"] in ("clean", p)]
                pts.sort(key=lambda r: r["strength"])
                scale = 255 if pts[-1]["attack"] in ("FGSM", "PGD") else 1
                xs = [r["strength"] * scale for r in pts]
                ax.plot(xs, [r["accuracy"] for r in pts], marker="o", label=m)
                ax.fill_between(
                    xs, [r["ci_low"] for r in pts], [r["ci_high"] for r in pts], alpha=0.12
                )
            first = prow[0]
            unit = " (x 1/255)" if first["attack"] in ("FGSM", "PGD") else ""
            ax.set_xlabel(f"{first['attack']} strength{unit} on {first['targets'] or '-'}")
            ax.set_ylabel("accuracy")
            ax.set_ylim(0, 1.02)
            ax.set_title(f"{p}" + (f" ({group_by}: {g})" if group_by else ""), fontsize=10)
            ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        name = f"accuracy_{p}.png"
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        atomic_write_bytes(out_dir / name, buf.getvalue())
        written.append(name)
    return written


def _plot_feature_shift(
    out_dir: Path, shifts: Mapping[str, Mapping[str, Mapping[str, float]]]
) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(shifts)
    modalities = sorted({m for s in shifts.values() for m in s})
    fig, ax = plt.subplots(figsize=(max(4.5, 1.3 * len(labels) + 2), 3.6))
    width = 0.8 / max(1, len(modalities))
    for i, m in enumerate(modalities):
        vals = [shifts[k].get(m, {}).get("relative_l2", 0.0) for k in labels]
        ax.bar([j + i * width for j in range(len(labels))], vals, width, label=m)
    ax.set_xticks([j + width * (len(modalities) - 1) / 2 for j in range(len(labels))])
    ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("relative L2 feature shift")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(out_dir / "feature_shift.png", buf.getvalue())
    return "feature_shift.png"


def _section(title: str, intro: str, columns: list[str], rows: list[list[str]]) -> list[str]:
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
) -> Path:
    """Write results.csv, results.json, report.md, PNG plots and manifest.json to ``out_dir``.

    Args:
        out_dir: Report folder (created).
        rows: Rows of :func:`modfuse.evaluate.robustness_sweep` (may carry extra keys).
        feature_shifts: ``{label: feature_shift(...)}``.
        reliance: ``{model: modality_reliance(...)}``.
        manifest: Config, seed, class map...; versions and git revision are added.
        group_by: A row key that splits tables and plots (e.g. ``"world"``).
        title: The report's heading.
        notes: Markdown placed under the heading.
        flags: Sanity-check flags; default: the ``flags`` of ``rows`` when it is the result
            of :func:`modfuse.evaluate.robustness_sweep`.

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
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    flags = list(flags if flags is not None else getattr(rows, "flags", []))
    rows = [dict(r) for r in rows]
    atomic_write_bytes(out / "results.csv", _csv(rows).encode())
    payload = {
        "rows": rows,
        "feature_shift": feature_shifts or {},
        "reliance": reliance or {},
        "flags": flags,
    }
    atomic_write_json(out / "results.json", payload)
    atomic_write_json(out / "manifest.json", {**(manifest or {}), **environment()})
    plots = (
        _plot_sweeps(out, rows, group_by) if any(r["perturbation"] != "clean" for r in rows) else []
    )
    md = [f"# {title}", ""]
    if notes:
        md += [notes, ""]
    md += ["## Sanity checks", ""]
    if flags:
        md += [
            f"**{len(flags)} flag(s): read these numbers with care.**",
            "",
            "| check | model | what was seen | what it means | what to do |",
            "|---|---|---|---|---|",
        ]
        md += [
            f"| {f['check']} | {f['model']} | {f['detail']} | {f['meaning']} | {f['action']} |"
            for f in flags
        ]
    else:
        md.append(
            "No flags: accuracy falls with strength, PGD is at least as strong as FGSM, "
            "input gradients are alive, the models are deterministic, and random noise "
            "is weaker than the gradient attacks."
        )
    md += ["", "## Accuracy under perturbation", "", accuracy_tables(rows, group_by), ""]
    md += [f"![{p}]({p})" for p in plots] + [""]
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
        md += [f"![feature shift]({_plot_feature_shift(out, feature_shifts)})", ""]
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

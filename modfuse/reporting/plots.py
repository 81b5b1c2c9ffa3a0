"""Plots of a report (PNG, written atomically): accuracy against strength per perturbation,
feature shift, and training curves. Used by :func:`modfuse.reporting.report.write_report`.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from modfuse.io.tensor_files import atomic_write_bytes
from modfuse.reporting.tables import UNIT_LABELS, unit_of


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    _pyplot().close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _in_255ths(unit: str, values: Sequence[float]) -> bool:
    """An L-inf eps axis whose every value is a whole number of 1/255 steps (image pixels)."""
    return unit == "linf" and all(abs(v * 255 - round(v * 255)) < 1e-6 for v in values)


def plot_sweeps(
    out_dir: Path, rows: Sequence[Mapping[str, Any]], group_by: str | None
) -> list[str]:
    """One ``accuracy_<perturbation>.png`` per perturbation; returns the file names.

    Rows of several seeds are drawn from their means (``seed == "mean"``) when present.
    """
    plt = _pyplot()
    if any(r.get("seed") == "mean" for r in rows):
        rows = [r for r in rows if r.get("seed") == "mean"]
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
            first = prow[0]
            unit = unit_of(first)
            scale = 255 if _in_255ths(unit, [r["strength"] for r in prow]) else 1
            for m in dict.fromkeys(r["model"] for r in prow):
                pts = [r for r in sub if r["model"] == m and r["perturbation"] in ("clean", p)]
                pts.sort(key=lambda r: r["strength"])
                xs = [r["strength"] * scale for r in pts]
                ax.plot(xs, [r["accuracy"] for r in pts], marker="o", label=m)
                ax.fill_between(
                    xs, [r["ci_low"] for r in pts], [r["ci_high"] for r in pts], alpha=0.12
                )
            label = UNIT_LABELS.get(unit, unit or "strength") + (" (x 1/255)" if scale > 1 else "")
            ax.set_xlabel(f"{first['attack']}: {label} on {first['targets'] or '-'}")
            ax.set_ylabel("accuracy")
            ax.set_ylim(0, 1.02)
            ax.set_title(f"{p}" + (f" ({group_by}: {g})" if group_by else ""), fontsize=10)
            ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        name = f"accuracy_{p}.png"
        _save(fig, out_dir / name)
        written.append(name)
    return written


def plot_feature_shift(
    out_dir: Path, shifts: Mapping[str, Mapping[str, Mapping[str, float]]]
) -> str:
    """``feature_shift.png``: relative L2 feature shift per perturbation and modality."""
    plt = _pyplot()
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
    _save(fig, out_dir / "feature_shift.png")
    return "feature_shift.png"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def plot_training_curves(
    out_dir: Path, histories: Mapping[str, Sequence[Mapping[str, float]]]
) -> str:
    """``training_curves.png``: training loss (left), training and validation accuracy (right),
    one colour per model; epochs without a validation accuracy (NaN) are left out."""
    plt = _pyplot()
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(9.2, 3.6))
    for i, (name, history) in enumerate(histories.items()):
        colour = f"C{i % 10}"
        epochs = [int(h["epoch"]) + 1 for h in history]
        loss_ax.plot(epochs, [h["train_loss"] for h in history], marker="o", color=colour)
        acc_ax.plot(
            epochs,
            [h["train_acc"] for h in history],
            marker="o",
            color=colour,
            label=f"{name} train",
        )
        val = [(e, h["val_acc"]) for e, h in zip(epochs, history) if _finite(h.get("val_acc"))]
        if val:
            acc_ax.plot(*zip(*val), marker="s", ls="--", color=colour, label=f"{name} val")
    loss_ax.set_ylabel("training loss")
    acc_ax.set_ylabel("accuracy")
    acc_ax.set_ylim(0, 1.02)
    for ax in (loss_ax, acc_ax):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    acc_ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, out_dir / "training_curves.png")
    return "training_curves.png"

"""A study's files: results.csv, results.json, report.md with its plots, manifest.json."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from modfuse.io.tensor_files import atomic_write_bytes, atomic_write_json
from modfuse.reporting.plots import plot_training_curves
from modfuse.study.schema import StudyConfig

__all__ = ["CSV_COLUMNS", "write_study_files"]

CSV_COLUMNS = ["model", "seed", "threat", "attack_name", "strength", "correct", "n", "accuracy",
               "ci_low", "ci_high", "accuracy_std", "seeds"]


def _csv(rows: Sequence[Mapping[str, Any]]) -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue().encode()


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}"


def _accuracy_tables(cfg: StudyConfig, means: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = []
    clean = {r["model"]: r for r in means if r["attack_name"] == "clean"}
    lines += ["## Clean accuracy", "", "| model | accuracy (mean ± std over seeds) |", "|---|---|"]
    lines += [f"| {m} | {r['accuracy']:.3f} ± {r['accuracy_std']:.3f} |" for m, r in clean.items()]
    for a in cfg.evaluation.attacks:
        for t in cfg.threat_models():
            hits = [r for r in means if r["attack_name"] == a.name and r["threat"] == t.name]
            if not hits:
                continue
            strengths = sorted({float(r["strength"]) for r in hits})
            head = " | ".join(f"{s:g}" for s in strengths)
            on = f"; the first {a.items} test items" if a.items else ""
            lines += ["", f"## {a.name} on {t.name} (moves {', '.join(t.targets)}{on})", "",
                      f"| model | {head} |", "|---|" + "---|" * len(strengths)]
            for m in cfg.models:
                cells = []
                for s in strengths:
                    r = next((r for r in hits if r["model"] == m and r["strength"] == s), None)
                    cells.append("not read" if r is None else
                                 f"{r['accuracy']:.3f} ± {r['accuracy_std']:.3f}")
                lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines


def _plot_threats(out: Path, cfg: StudyConfig, means: Sequence[Mapping[str, Any]]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    for a in cfg.evaluation.attacks:
        threats = [t for t in cfg.threat_models()
                   if any(r["attack_name"] == a.name and r["threat"] == t.name for r in means)]
        if not threats:
            continue
        fig, axes = plt.subplots(1, len(threats), figsize=(3.4 * len(threats), 3.0), squeeze=False)
        colours = {m: f"C{i % 10}" for i, m in enumerate(cfg.models)}  # one per model, every panel
        for ax, t in zip(axes[0], threats):
            for m in cfg.models:
                pts = sorted((r["strength"], r["accuracy"], r["accuracy_std"]) for r in means
                             if r["model"] == m and r["attack_name"] == a.name
                             and r["threat"] == t.name)
                if not pts:
                    continue
                xs, ys, sd = zip(*pts)
                ax.plot(xs, ys, marker="o", color=colours[m])
                ax.fill_between(xs, [y - s for y, s in zip(ys, sd)],
                                [y + s for y, s in zip(ys, sd)], color=colours[m], alpha=0.2)
            ax.set_title(f"{a.name} on {t.name}", fontsize=9)
            ax.set_xlabel("strength")
            ax.set_ylim(0, 1)
        axes[0][0].set_ylabel("accuracy (band: ± std over seeds)")
        handles = [plt.Line2D([], [], color=c, marker="o", label=m) for m, c in colours.items()]
        fig.legend(handles=handles, fontsize=7, loc="lower center", ncol=len(handles),
                   frameon=False)
        fig.tight_layout(rect=(0, 0.08, 1, 1))
        name = f"accuracy_{a.name}.png"
        fig.savefig(out / name, dpi=110, metadata={"Software": None})
        plt.close(fig)
        names.append(name)
    return names


def write_study_files(out: Path, cfg: StudyConfig, found: Mapping[str, Any],
                      manifest: Mapping[str, Any]) -> Path:
    """Write the study's files into ``out``; returns the path of report.md."""
    out.mkdir(parents=True, exist_ok=True)
    rows, means = found["rows"], found["means"]
    atomic_write_bytes(out / "results.csv", _csv(list(rows) + list(means)))
    atomic_write_json(out / "results.json", dict(found))
    lines = [f"# Study: {cfg.name}", "",
             f"Models {', '.join(cfg.models)}; seeds {cfg.seeds} (each varies the heads"
             + "".join(f" and the {v}" for v in cfg.vary) + f"); {found['test_items']} test items.",
             "", "Baselines on the test set: majority class "
             f"{_fmt(found['baselines'].get('majority'))}, uniform chance "
             f"{_fmt(found['baselines'].get('chance'))}.", ""]
    lines += _accuracy_tables(cfg, means)
    table = found["single_source"]
    if table:
        mods = sorted(cfg.encoders)
        lines += ["", "## Single-source robustness (model x attacked modality)", "",
                  "Accuracy when the attacker moves one modality only; the last column is the "
                  "minimum over the modalities the model reads (Yang et al., CVPR 2021).", "",
                  "| attack | strength | model | " + " | ".join(mods) + " | single-source |",
                  "|---|---|---|" + "---|" * (len(mods) + 1)]
        for r in table:
            cells = " | ".join(_fmt(r["by_modality"][m]) for m in mods)
            lines.append(f"| {r['attack']} | {r['strength']:g} | {r['model']} | {cells} | "
                         f"{_fmt(r['single_source'])} |")
    if found["hypotheses"]:
        lines += ["", "## Hypotheses (on the seed means)", "", "| hypothesis | verdict | numbers |",
                  "|---|---|---|"]
        lines += [f"| {h['claim']} | **{h['verdict']}** | {h['detail']} |"
                  for h in found["hypotheses"]]
        lines += [f"\n*{h['claim']}: this does not hold.*" for h in found["hypotheses"]
                  if h["verdict"] == "does not hold"]
    flags = found["flags"]
    lines += ["", "## Sanity checks", ""]
    lines += [
        f"- {f['model']} (seed {f['seed']}): {f['check']}: {f['detail']}" for f in flags
    ] or [
        "No check was flagged (each sweep's checks: see results.json)."]
    for name in _plot_threats(out, cfg, means):
        lines += ["", f"![{name}]({name})"]
    if found["histories"]:
        lines += ["", f"![training curves]({plot_training_curves(out, found['histories'])})"]
    atomic_write_json(out / "manifest.json", dict(manifest))
    report = out / "report.md"
    atomic_write_bytes(report, ("\n".join(lines) + "\n").encode())
    return report

"""Draw the docs' result figures from the output folder of the reference example.

The figures come from a finished run, never from numbers typed into a script, so what the docs
show is what ``python examples/coco_context_fusion.py --out DIR`` measured (the docs' figures
come from that full 3-seed run; a ``--quick`` run draws the same figures from 1 seed). Read from
``DIR``: ``report/results.csv`` (the accuracy rows; the ``seed="mean"`` rows are plotted),
``report/results.json`` (``feature_shift``), ``report/manifest.json`` (``settings``) and the
synthetic test images of ``data/distinct``. Nothing is downloaded.

Run:  python docs/make_figures.py --run DIR [--out docs/img]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))  # make_hide_figure, beside this file
import make_hide_figure  # noqa: E402

from modfuse import ContextViews  # noqa: E402
from modfuse.data import CocoContext  # noqa: E402
from modfuse.data.coco.dataset import coco_splits  # noqa: E402

#: Every file this script writes (under ``--out``); tests/test_docs_figures.py checks that the
#: docs reference exactly these, so a figure cannot be dropped or referenced without the other.
FIGURES = frozenset(
    {
        "paper_curves.png",
        "threat_models.png",
        "penalty_tradeoff.png",
        "feature_shift.png",
        "views_grid.png",
        "headline.png",
    }
)
MAX_BYTES = 200_000  # the docs ship in the repository: keep every PNG small
DPI = 90
MODELS = ("fg_only", "bg_only", "joint", "joint_fg_penalty", "fg_adv_trained")
COLOURS = dict(zip(MODELS, ("tab:red", "tab:green", "tab:blue", "tab:purple", "tab:orange")))
THREATS = ("fg_fgsm", "object_fgsm", "bg_fgsm", "image_fgsm")
FLOATS = ("accuracy", "accuracy_std", "ci_low", "ci_high", "strength", "seeds")


@dataclass
class Run:
    """What the figures need from one run of the reference example."""

    means: list[dict[str, Any]]  # the seed-mean rows, numbers parsed
    per_seed: list[dict[str, Any]]  # the rows of each seed (seed "0", "1", ...)
    feature_shift: dict[str, dict[str, dict[str, float]]]
    settings: dict[str, Any]
    data: Path  # the run's data/ folder (synthetic COCO-format worlds)


def load_run(run: Path) -> Run:
    """Read a run folder; raise if it has no seed-mean rows (nothing honest to plot)."""
    report = run / "report"
    with open(report / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k in FLOATS:
            r[k] = float(r[k]) if r.get(k) not in (None, "") else 0.0
    means = [r for r in rows if r["seed"] == "mean"]
    if not means:
        raise ValueError(f"{report / 'results.csv'} has no seed='mean' rows")
    results = json.loads((report / "results.json").read_text())
    manifest = json.loads((report / "manifest.json").read_text())
    return Run(
        means,
        [r for r in rows if r["seed"] != "mean"],
        results.get("feature_shift", {}),
        manifest["settings"],
        run / "data",
    )


def select(rows: Sequence[dict], **match: Any) -> list[dict]:
    """Rows whose fields equal ``match``, sorted by strength."""
    out = [r for r in rows if all(r.get(k) == v for k, v in match.items())]
    return sorted(out, key=lambda r: r["strength"])


def band(r: dict) -> tuple[float, float]:
    """± the seeds' standard deviation; with one seed (std 0) the row's 95% Wilson interval."""
    if r["seeds"] > 1:
        return r["accuracy"] - r["accuracy_std"], r["accuracy"] + r["accuracy_std"]
    return r["ci_low"], r["ci_high"]


def band_note(rows: Sequence[dict]) -> str:
    """What the bands of ``rows`` are, for a title: figures from 1 and from 3 seeds differ, and
    one figure may mix rows of every seed with rows of the first seed only."""
    counts = sorted({int(r["seeds"]) for r in rows}) or [1]
    seeds = counts[-1]
    if seeds == 1:
        return "band: 95% Wilson interval (1 seed)"
    if len(counts) == 1:
        return f"band: ± std over {seeds} seeds"
    return f"band: ± std over {seeds} seeds / Wilson 95% (1 seed)"


def subsample_world(rows: Sequence[dict], world: str = "distinct") -> str | None:
    """The worst-case group, ``"<world>, first N items"``, if the run has one."""
    return next((r["world"] for r in rows if r["world"].startswith(f"{world}, first ")), None)


def curve(
    ax: Any, rows: Sequence[dict], model: str, scale: float, shade: bool = True, **style: Any
) -> None:
    """One model's accuracy against strength (clean at 0), with its band if ``shade``."""
    if not rows:
        return
    x = [r["strength"] * scale for r in rows]
    lo, hi = zip(*(band(r) for r in rows))
    ax.plot(x, [r["accuracy"] for r in rows], color=COLOURS[model], marker="o", ms=3, **style)
    if shade:
        ax.fill_between(x, lo, hi, color=COLOURS[model], alpha=0.15, lw=0)


def sweep(
    rows: Sequence[dict], world: str, model: str, pert: str, seed: str = "mean"
) -> list[dict]:
    """Clean (strength 0), then ``pert`` at each strength, of one model and seed."""
    cell = {"world": world, "model": model, "seed": seed}
    return select(rows, perturbation="clean", **cell) + select(rows, perturbation=pert, **cell)


def paper_curves(run: Run) -> plt.Figure:
    """(a) fg blur, fg FGSM and the fg worst case (beside FGSM, on the subsample)."""
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.2), sharey=True)
    for ax, pert, scale, xlabel in (
        (axes[0], "fg_blur", 1.0, "blur sigma (px)"),
        (axes[1], "fg_fgsm", 255.0, "FGSM eps (x/255)"),
    ):
        for m in MODELS:
            curve(ax, sweep(run.means, "distinct", m, pert), m, scale, label=m)
        ax.set_title(f"{pert}, distinct world", fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
    sub = subsample_world(run.means)
    ax = axes[2]
    if sub:
        for m in MODELS:
            for pert, ls in (("fg_worst_case", "-"), ("fg_fgsm", ":")):
                curve(ax, sweep(run.means, sub, m, pert), m, 255.0, ls=ls)
        ax.plot([], [], "k-", label="worst case")
        ax.plot([], [], "k:", label="FGSM")
        ax.legend(fontsize=7, loc="lower left")
    ax.set_title(f"fg worst case, {sub or 'not in this run'}", fontsize=9)
    ax.set_xlabel("eps (x/255)", fontsize=8)
    axes[0].set_ylabel("accuracy", fontsize=8)
    axes[0].legend(fontsize=7, loc="lower left")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"Seed-mean accuracy; {band_note(run.means)}", fontsize=9)
    return fig


def threat_models(run: Run) -> plt.Figure:
    """(b) who moves what: the four FGSM threat models at eps 8/255 (as the report's table)."""
    eps = 8 / 255
    rows = [r for r in run.means if r["world"] == "distinct" and r["perturbation"] in THREATS]
    # The CSV rounds strengths to 6 significant digits: match the nearest, not equality.
    near = min({r["strength"] for r in rows}, key=lambda s: abs(s - eps), default=eps)
    clean = {r["model"]: r for r in select(run.means, world="distinct", perturbation="clean")}
    cells = {(r["model"], r["perturbation"]): r for r in rows if abs(r["strength"] - near) < 1e-6}
    fig, ax = plt.subplots(figsize=(6.4, 3.0))
    width = 0.8 / (len(THREATS) + 1)
    shades = ("0.8", "tab:red", "tab:pink", "tab:green", "tab:gray")
    for k, (pert, shade) in enumerate(zip(("clean", *THREATS), shades)):
        for i, m in enumerate(MODELS):
            r = clean.get(m) if pert == "clean" else cells.get((m, pert))
            if r is None:
                continue
            lo, hi = band(r)
            acc = r["accuracy"]
            ax.bar(
                i + (k - 2) * width,
                acc,
                width,
                color=shade,
                yerr=[[acc - lo], [hi - acc]],
                error_kw={"lw": 0.8},
                label=pert if i == 0 else None,
            )
    ax.set_xticks(range(len(MODELS)), MODELS, fontsize=7)
    ax.set_ylabel("accuracy", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_title(f"FGSM eps {near * 255:.0f}/255, distinct world ({band_note(rows)})", fontsize=9)
    ax.legend(fontsize=7, ncol=5, loc="lower center", bbox_to_anchor=(0.5, 1.1), frameon=False)
    ax.grid(alpha=0.3, axis="y")
    return fig


def penalty_tradeoff(run: Run) -> plt.Figure:
    """(c) clean vs mean fg-FGSM accuracy of the joint model at each penalty alpha."""
    alphas = {"joint": 0.0, "joint_fg_penalty": float(run.settings["penalty_alpha"])}
    for r in run.means:
        found = re.fullmatch(r"joint_alpha_(.+)", r["model"])
        if found:
            alphas[r["model"]] = float(found.group(1))
    pts = []
    for model, alpha in alphas.items():
        clean = select(run.means, world="distinct", model=model, perturbation="clean")
        fgsm = select(run.means, world="distinct", model=model, perturbation="fg_fgsm")
        if clean and fgsm:
            pts.append((alpha, statistics.mean(r["accuracy"] for r in fgsm), clean[0]))
    pts.sort(key=lambda p: p[0])
    fig, ax = plt.subplots(figsize=(4.4, 3.2))
    x, y = [p[1] for p in pts], [p[2]["accuracy"] for p in pts]
    bands = [band(c) for *_, c in pts]
    err = [[a - lo for a, (lo, _) in zip(y, bands)], [hi - a for a, (_, hi) in zip(y, bands)]]
    ax.errorbar(x, y, yerr=err, color="tab:purple", marker="o", ms=4, capsize=2, lw=1)
    for k, (alpha, f, c) in enumerate(pts):
        # Alternate above / below: neighbouring alphas can land on almost the same point.
        ax.annotate(
            f"alpha={alpha:g}",
            (f, c["accuracy"]),
            xytext=(4, 4 if k % 2 == 0 else -10),
            textcoords="offset points",
            fontsize=7,
        )
    ax.set_xlabel("accuracy under fg FGSM (mean over eps)", fontsize=8)
    ax.set_ylabel("clean accuracy", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_title(f"Penalty trade-off, distinct world\n({band_note(run.means)})", fontsize=9)
    ax.grid(alpha=0.3)
    return fig


def feature_shift(run: Run) -> plt.Figure:
    """(d) relative L2 shift of each modality's features under each blur."""
    keys = sorted(run.feature_shift)
    fig, ax = plt.subplots(figsize=(5.6, 3.0))
    for k, (mod, shade) in enumerate((("fg", "tab:red"), ("bg", "tab:green"))):
        vals = [run.feature_shift[key].get(mod, {}).get("relative_l2", 0.0) for key in keys]
        bars = ax.bar(
            [i + (k - 0.5) * 0.38 for i in range(len(keys))],
            vals,
            0.38,
            color=shade,
            label=f"{mod} features",
        )
        ax.bar_label(bars, fmt="%.2f", fontsize=6.5)  # a 0.00 bar is a result, not a gap
    ax.set_xticks(range(len(keys)), [k.replace(": ", ":\n") for k in keys], fontsize=7)
    ax.set_ylabel("relative L2 shift", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_title("Feature shift of the joint model (first seed)", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    return fig


def views_grid(run: Run, n: int = 3) -> plt.Figure:
    """(e) image / fg view / bg view of synthetic test items, and a COCO-style scene."""
    _, test = coco_splits(run.data / "distinct", views=ContextViews(size=48))
    picked, labels = [], set()
    for i in range(len(test)):  # one item per class, so the rows differ
        item = test[i]
        if item["label"] not in labels:
            picked.append(item)
            labels.add(item["label"])
        if len(picked) == n:
            break
    with tempfile.TemporaryDirectory() as tmp:
        image_dir, ann_file = make_hide_figure.write_scene(Path(tmp))
        coco = CocoContext(image_dir, ann_file, views=ContextViews(size=96), hide_instances="all")
        picked.append(coco[0])
    names = [f"synthetic: {test.classes[int(it['label'])]}" for it in picked[:-1]]
    names.append('COCO-style scene\nhide_instances="all"')
    fig, axes = plt.subplots(len(picked), 3, figsize=(4.6, 1.5 * len(picked)), squeeze=False)
    for row, item, name in zip(axes, picked, names):
        for ax, key in zip(row, ("image", "fg", "bg")):
            ax.imshow(item[key].permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].contour(item["mask"][0].numpy(), levels=[0.5], colors="white", linewidths=0.8)
        row[0].set_ylabel(name, fontsize=6.5)
    for ax, title in zip(axes[0], ("image (mask outlined)", "fg view", "bg view")):
        ax.set_title(title, fontsize=8)
    return fig


def headline(run: Run) -> plt.Figure:
    """(f) joint vs fg-only under fg FGSM, distinct world, with the seed spread."""
    fig, ax = plt.subplots(figsize=(4.4, 2.8))
    shown = []
    for m in ("fg_only", "joint"):
        rows = sweep(run.means, "distinct", m, "fg_fgsm")
        shown += rows
        curve(ax, rows, m, 255.0, label=m)
        seeds = sorted({r["seed"] for r in run.per_seed})
        for seed in seeds if len(seeds) > 1 else ():
            # Each seed's own curve, thin: the spread behind the mean, not only its summary.
            rows = sweep(run.per_seed, "distinct", m, "fg_fgsm", seed)
            curve(ax, rows, m, 255.0, shade=False, lw=0.5, alpha=0.6)
    ax.set_xlabel("FGSM eps on the foreground view (x/255)", fontsize=8)
    ax.set_ylabel("accuracy", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_title(f"Distinct contexts; {band_note(shown)}", fontsize=8.5)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return fig


DRAW: dict[str, Callable[[Run], plt.Figure]] = {
    "paper_curves.png": paper_curves,
    "threat_models.png": threat_models,
    "penalty_tradeoff.png": penalty_tradeoff,
    "feature_shift.png": feature_shift,
    "views_grid.png": views_grid,
    "headline.png": headline,
}
assert set(DRAW) == FIGURES  # one drawing function per declared file


def save(fig: plt.Figure, path: Path) -> int:
    """Write ``fig`` as PNG; raise (writing nothing) if it would exceed :data:`MAX_BYTES`."""
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    data = buf.getvalue()
    if len(data) > MAX_BYTES:
        raise ValueError(f"{path.name} is {len(data)} bytes, over the {MAX_BYTES}-byte limit")
    path.write_bytes(data)
    return len(data)


def make_figures(run_dir: Path, out: Path) -> dict[str, int]:
    """Draw every figure of :data:`FIGURES` from ``run_dir`` into ``out``: {file: bytes}."""
    run = load_run(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    return {name: save(draw(run), out / name) for name, draw in DRAW.items()}


def main(argv: list[str] | None = None) -> dict[str, int]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="the example's --out folder")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "img")
    args = parser.parse_args(argv)
    sizes = make_figures(args.run, args.out)
    for name, size in sizes.items():
        print(f"{args.out / name}: {size / 1000:.0f} kB")
    return sizes


if __name__ == "__main__":
    main(sys.argv[1:])

"""The docs' figures exist, stay small, and are the ones docs/make_figures.py draws.

No example run here: the drawing is checked on a tiny fake run folder written by the test.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

from modfuse.data.synthetic import make_synthetic_coco
from modfuse.reporting.tables import csv_text, seed_means

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
IMG = DOCS / "img"
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)[^)]*\)|<img [^>]*src=\"([^\"]+)\"")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MAX_BYTES = 200_000


@functools.cache
def load_script():
    """docs/make_figures.py as a module (docs/ is no package)."""
    spec = importlib.util.spec_from_file_location("make_figures", DOCS / "make_figures.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its own module up while being built
    spec.loader.exec_module(module)
    return module


def referenced() -> dict[Path, list[str]]:
    """Every local image the pages show: resolved path -> the pages showing it."""
    found: dict[Path, list[str]] = {}
    for page in PAGES:
        for groups in IMAGE.findall(page.read_text()):
            target = next(g for g in groups if g)
            if "://" not in target:
                path = (page.parent / target).resolve()
                found.setdefault(path, []).append(str(page.relative_to(ROOT)))
    return found


def assert_small_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC), f"{path} is not a PNG"
    assert len(data) < MAX_BYTES, f"{path} is {len(data)} bytes (limit {MAX_BYTES})"


def test_every_referenced_image_exists_and_is_a_small_png():
    images = referenced()
    assert any(p.parent == IMG for p in images), "no page shows a docs/img figure"
    for path, pages in images.items():
        assert path.is_file(), f"{pages} show {path}, which does not exist"
        assert path.suffix == ".png", f"{pages} show {path}: figures are PNG files"
        assert_small_png(path)


def test_docs_show_exactly_the_figures_the_scripts_make():
    figures = load_script().FIGURES
    shown = {p.name for p in referenced() if p.parent == IMG}
    # Figures drawn by the other docs/make_*.py scripts (flow chart, hide_instances) name
    # their output file in their own source.
    others = {
        name
        for script in DOCS.glob("make_*.py")
        if script.name != "make_figures.py"
        for name in shown
        if name in script.read_text()
    }
    assert not figures & others, f"drawn by two scripts: {figures & others}"
    missing = figures - shown
    assert not missing, f"make_figures.py draws {missing}, but no page shows them"
    unmade = shown - others - figures
    assert not unmade, f"pages show docs/img/{unmade}, which no docs/make_*.py draws"


MODELS = ("fg_only", "bg_only", "joint", "joint_fg_penalty", "fg_adv_trained", "joint_alpha_0.2")
SWEEPS = {
    "fg_blur": ("GaussianBlur", "fg", (1.0, 2.0)),
    "fg_fgsm": ("FGSM", "fg", (2 / 255, 8 / 255)),
    "object_fgsm": ("FGSM", "image", (8 / 255,)),
    "bg_fgsm": ("FGSM", "bg", (8 / 255,)),
    "image_fgsm": ("FGSM", "image", (8 / 255,)),
}


def fake_rows() -> list[dict]:
    """Two seeds of every cell the figures read, in the example's row format."""
    rows = []

    def add(world, model, pert, attack, targets, strength, seed, n=6):
        correct = (len(rows) * 5 + 3 * seed) % (n + 1)  # varied, deterministic
        rows.append(
            dict(
                world=world, model=model, perturbation=pert, attack=attack, targets=targets,
                strength=strength, source="", seed=seed, correct=correct, n=n,
                accuracy=correct / n, ci_low=0.0, ci_high=1.0, iterative=False,
                norm="linf" if attack == "FGSM" else "none", unit="",
            )
        )  # fmt: skip

    sub = "distinct, first 6 items"
    for seed in (0, 1):
        for model in MODELS:
            add("distinct", model, "clean", "none", "", 0.0, seed)
            for pert, (attack, targets, strengths) in SWEEPS.items():
                for s in strengths:
                    add("distinct", model, pert, attack, targets, s, seed)
        for model in ("fg_only", "joint", "joint_fg_penalty", "fg_adv_trained"):
            add(sub, model, "clean", "none", "", 0.0, seed)
            add(sub, model, "fg_fgsm", "FGSM", "fg", 8 / 255, seed)
            add(sub, model, "fg_worst_case", "Ensemble", "fg", 8 / 255, seed)
    return rows


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run")
    report = run / "report"
    report.mkdir()
    rows = fake_rows()
    (report / "results.csv").write_text(csv_text(rows + seed_means(rows)))
    shift = {"fg": {"relative_l2": 0.4, "cosine_distance": 0.1}, "bg": {"relative_l2": 0.0}}
    (report / "results.json").write_text(
        json.dumps({"feature_shift": {"distinct: fg blur sigma=2": shift}})
    )
    settings = {"penalty_alpha": 0.05, "worst_case_eps": 8 / 255}
    (report / "manifest.json").write_text(json.dumps({"settings": settings}))
    make_synthetic_coco(run / "data" / "distinct", 6, 6, size=48)
    return run


def test_script_writes_every_declared_figure(fake_run, tmp_path):
    script = load_script()
    sizes = script.make_figures(fake_run, tmp_path / "img")
    assert set(sizes) == set(script.FIGURES)
    assert {p.name for p in (tmp_path / "img").iterdir()} == set(script.FIGURES)
    for name in script.FIGURES:
        assert_small_png(tmp_path / "img" / name)


def test_script_refuses_an_oversized_figure(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    script = load_script()
    monkeypatch.setattr(script, "MAX_BYTES", 100)
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, 1])
    with pytest.raises(ValueError, match="over the 100-byte limit"):
        script.save(fig, tmp_path / "big.png")
    assert not (tmp_path / "big.png").exists()


def test_script_refuses_a_run_without_seed_means(fake_run, tmp_path):
    script = load_script()
    report = tmp_path / "report"
    report.mkdir()
    (report / "results.csv").write_text(csv_text(fake_rows()))  # no seed="mean" rows
    with pytest.raises(ValueError, match="no seed='mean' rows"):
        script.load_run(tmp_path)

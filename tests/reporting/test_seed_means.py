"""Rows of several seeds: means with their spread, one table per seed, every row kept."""

import csv
import io
import statistics

import pytest

from modfuse.reporting.report import accuracy_tables, seed_means, write_report
from modfuse.robustness.sanity import check_rows
from modfuse.robustness.stats import wilson_interval


def row(seed, pert, strength, correct, n=200, world="a"):
    return {
        "world": world,
        "seed": seed,
        "model": "m",
        "perturbation": pert,
        "attack": "none" if pert == "clean" else "FGSM",
        "targets": "" if pert == "clean" else "fg",
        "strength": strength,
        "source": "",
        "correct": correct,
        "n": n,
        "accuracy": correct / n,
        "ci_low": 0.0,
        "ci_high": 1.0,
        "norm": "none" if pert == "clean" else "linf",
        "unit": "" if pert == "clean" else "linf",
        "iterative": False,
    }


ROWS = [
    row(s, p, v, c, world=w)
    for w in ("a", "b")
    for s, (clean, adv) in enumerate(((180, 100), (170, 90), (176, 110)))
    for p, v, c in (("clean", 0.0, clean - (w == "b")), ("fgsm", 8 / 255, adv))
]


def test_seed_means_pool_counts_and_keep_cells_apart():
    means = seed_means(ROWS)
    assert len(means) == 4  # (world a, b) x (clean, fgsm)
    m = next(r for r in means if r["world"] == "a" and r["perturbation"] == "fgsm")
    accs = [100 / 200, 90 / 200, 110 / 200]
    assert m["seed"] == "mean" and m["seeds"] == 3
    assert m["accuracy"] == pytest.approx(statistics.fmean(accs))
    assert m["accuracy_std"] == pytest.approx(statistics.stdev(accs))
    assert (m["correct"], m["n"]) == (300, 600)
    assert (m["ci_low"], m["ci_high"]) == pytest.approx(wilson_interval(300, 600))
    b = next(r for r in means if r["world"] == "b" and r["perturbation"] == "clean")
    assert b["correct"] == 180 + 170 + 176 - 3  # world b's own rows, not world a's
    one = seed_means([r for r in ROWS if r["seed"] == 0])
    assert {r["accuracy_std"] for r in one} == {0.0} and {r["seeds"] for r in one} == {1}


def test_tables_show_mean_and_spread_then_each_seed():
    text = accuracy_tables(ROWS, group_by="world")
    assert "| m | 0.877 ± 0.025 | 0.500 ± 0.050 |" in text  # world a: clean, 8/255
    assert "### Per seed" in text
    per_seed = text[text.index("### Per seed") :]
    assert "(world = a, seed = 2)" in per_seed and "| m | 0.880 | 0.550 |" in per_seed


def test_results_csv_keeps_every_seed_and_the_means(tmp_path):
    write_report(tmp_path, ROWS, group_by="world")
    rows = list(csv.DictReader(io.StringIO((tmp_path / "results.csv").read_text())))
    assert len(rows) == len(ROWS) + 4
    assert [r["seed"] for r in rows].count("mean") == 4
    assert {r["seed"] for r in rows} == {"0", "1", "2", "mean"}
    assert "accuracy_std" in rows[0] and "seeds" in rows[0]
    text = (tmp_path / "report.md").read_text()
    assert "± " in text and "### Per seed" in text


def test_row_checks_do_not_mix_seeds():
    # Seed 0 has a weak clean model, seed 1 a strong attack: mixed, 0.5 -> 0.8 looks a rise.
    rows = [row(1, "clean", 0.0, 190), row(1, "fgsm", 8 / 255, 160), row(0, "clean", 0.0, 100)]
    assert check_rows(rows) == []
    assert check_rows(rows + seed_means(rows)) == []  # the derived means are not checked again

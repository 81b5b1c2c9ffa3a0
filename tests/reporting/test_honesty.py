"""A report states what its sanity checks found and which of them ran: never a check that did
not run, never a flag dropped on the way, never an L2 eps written as a fraction of 255."""

import json

from modfuse.attacks import FGSM, PGD, GaussianNoise
from modfuse.cli.commands import main
from modfuse.reporting.report import write_report
from modfuse.robustness import Sweep, robustness_sweep
from modfuse.robustness.sanity import CHECKS
from tests.mlp_world import mlp_world

N = 64


def setup():
    return mlp_world(N)


def row(pert, strength, acc, attack="GaussianBlur", unit="sigma", norm="none", **extra):
    n = 500
    return {
        "model": "m",
        "perturbation": pert,
        "attack": "none" if pert == "clean" else attack,
        "targets": "" if pert == "clean" else "fg",
        "strength": strength,
        "source": "",
        "correct": round(acc * n),
        "n": n,
        "accuracy": acc,
        "ci_low": acc - 0.01,
        "ci_high": acc + 0.01,
        "norm": norm,
        "unit": "" if pert == "clean" else unit,
        "iterative": False,
        **extra,
    }


def status(checks, name):
    return next(c for c in checks if c["check"] == name)


def test_plain_rows_with_a_rising_accuracy_show_the_flag(tmp_path):
    # Rows alone (e.g. several sweeps concatenated): the row checks are computed again.
    rows = [row("clean", 0.0, 0.9), row("blur", 1.0, 0.5), row("blur", 2.0, 0.8)]
    text = write_report(tmp_path, rows).read_text()
    assert "1 flag(s)" in text and "| accuracy_rises_with_strength | flagged |" in text
    assert "| stochastic_model | not run | the report was built from rows only |" in text
    saved = json.loads((tmp_path / "results.json").read_text())
    assert [f["check"] for f in saved["flags"]] == ["accuracy_rises_with_strength"]
    assert [c["check"] for c in saved["checks"]] == list(CHECKS)


def test_flags_survive_modfuse_report(tmp_path, capsys):
    model, data = setup()
    quiet = Sweep("pgd", PGD(targets=("fg",), steps=1, alpha=0.001, random_start=False), [0.3])
    sweeps = [Sweep("fgsm", FGSM(targets=("fg",)), [0.3]), quiet]
    result = robustness_sweep({"m": model}, data, sweeps, batch_size=N, progress=False)
    write_report(tmp_path / "run" / "report", result, manifest={"config": {"name": "m"}})
    # `modfuse report` re-renders from results.json: the probes' flags and statuses stay.
    assert main(["report", str(tmp_path / "run")]) == 0
    text = capsys.readouterr().out
    assert "noise_stronger_than_attack" in text  # a probe's flag: not recomputable from rows
    assert status(result.checks, "iterative_weaker_than_single_step")["status"] == "flagged"
    assert "| iterative_weaker_than_single_step | flagged |" in text
    assert "| noise_stronger_than_attack | flagged |" in text
    assert "random linf noise" in text


def test_a_sweep_without_an_iterative_attack_does_not_claim_that_check(tmp_path):
    model, data = setup()
    sweeps = [Sweep("fgsm", FGSM(targets=("fg",)), [0.1, 0.3])]
    result = robustness_sweep({"m": model}, data, sweeps, batch_size=N, progress=False)
    assert result.flags == []
    text = write_report(tmp_path, result).read_text()
    assert "PGD is at least as strong" not in text
    assert "| iterative_weaker_than_single_step | not run |" in text
    iterative = status(result.checks, "iterative_weaker_than_single_step")
    assert iterative["status"] == "not run" and "no iterative attack" in iterative["detail"]
    assert status(result.checks, "vanishing_gradient")["status"] == "passed"


def test_a_sweep_without_gradient_attacks_does_not_claim_the_probes(tmp_path):
    model, data = setup()
    sweeps = [Sweep("noise", GaussianNoise(targets=("fg",), seed=0), [0.1])]
    result = robustness_sweep({"m": model}, data, sweeps, batch_size=N, progress=False)
    text = write_report(tmp_path, result).read_text()
    assert "gradients are alive" not in text and "weaker than the gradient attacks" not in text
    assert "| vanishing_gradient | not run | no white-box gradient attack was swept |" in text
    for name in ("vanishing_gradient", "noise_stronger_than_attack"):
        assert status(result.checks, name)["status"] == "not run", name
    assert status(result.checks, "stochastic_model")["status"] == "passed"


def test_sanity_off_says_no_check_ran(tmp_path):
    model, data = setup()
    sweeps = [Sweep("fgsm", FGSM(targets=("fg",)), [0.1]), Sweep("pgd", PGD(steps=3), [0.1])]
    result = robustness_sweep(
        {"m": model}, data, sweeps, batch_size=N, progress=False, sanity=False
    )
    text = write_report(tmp_path, result).read_text()
    assert "passed" not in text and "No flags: accuracy falls" not in text
    assert text.count("| not run | sanity=False |") == len(CHECKS)
    assert [c["status"] for c in result.checks] == ["not run"] * len(CHECKS)


def test_rows_carry_the_attack_metadata_and_l2_eps_is_not_a_255th(tmp_path):
    model, data = setup()
    sweeps = [
        Sweep("fgsm", FGSM(targets=("fg",)), [8 / 255]),
        Sweep("pgd_l2", PGD(targets=("fg",), norm="l2", steps=3, seed=0), [8 / 255]),
    ]
    result = robustness_sweep({"m": model}, data, sweeps, batch_size=N, progress=False)
    text = write_report(tmp_path, result).read_text()
    l2 = text[text.index("### pgd_l2") :].splitlines()
    assert "8/255" not in l2[2] and "0.0313725" in l2[2], l2[:3]
    fgsm = text[text.index("### fgsm") :].splitlines()
    assert "8/255" in fgsm[2]
    meta = {r["perturbation"]: (r["norm"], r["unit"], r["iterative"]) for r in result}
    assert meta == {
        "clean": ("none", "", False),
        "fgsm": ("linf", "linf", False),
        "pgd_l2": ("l2", "l2", True),
    }


def test_row_checks_never_compare_across_worlds():
    from modfuse.robustness.sanity import check_rows

    # Each world falls with strength; read as one sweep, 0.5 -> 0.8 would be a rise.
    rows = [
        row("clean", 0.0, 0.9, world="a"),
        row("blur", 1.0, 0.5, world="a"),
        row("clean", 0.0, 0.95, world="b"),
        row("blur", 2.0, 0.8, world="b"),
    ]
    assert check_rows(rows) == []
    # Within one world a rise is still seen, and the flag names the world.
    rows.append(row("blur", 3.0, 0.9, world="b"))
    (flag,) = check_rows(rows)
    assert flag.check == "accuracy_rises_with_strength" and "world=b" in flag.detail


def test_accuracy_rising_with_snr_is_not_a_rise():
    from modfuse.robustness.sanity import check_rows

    # More dB is less noise: accuracy rising with the SNR is the expected direction.
    snr = [row("clean", 0.0, 0.9)] + [
        row("snr", s, a, attack="GaussianNoise", unit="snr_db")
        for s, a in ((0.0, 0.3), (10.0, 0.6), (20.0, 0.85))
    ]
    assert check_rows(snr) == []
    # Read the other way round, the same numbers are a rise.
    flipped = [dict(r, accuracy=1.2 - r["accuracy"]) for r in snr[1:]]
    assert [f.check for f in check_rows(snr[:1] + flipped)] == ["accuracy_rises_with_strength"]


def test_an_snr_sweep_is_read_along_its_own_axis():
    model, data = setup()
    noise = GaussianNoise(snr_db=20.0, targets=("fg",), seed=0)
    sweep = Sweep("snr", noise, [-10.0, 0.0, 10.0, 30.0])
    result = robustness_sweep({"m": model}, data, [sweep], batch_size=N, progress=False)
    acc = [r["accuracy"] for r in result if r["perturbation"] == "snr"]
    assert acc[0] < acc[-1]  # accuracy rises with the SNR, as it should
    assert {r["unit"] for r in result if r["perturbation"] == "snr"} == {"snr_db"}
    assert result.flags == []

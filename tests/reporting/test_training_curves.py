"""Training curves in a report: from write_report(histories=...) and from `modfuse report`."""

import json
import math

from modfuse.cli.commands import main
from modfuse.reporting.report import write_report

ROWS = [
    {
        "model": "m",
        "perturbation": "clean",
        "attack": "none",
        "targets": "",
        "strength": 0.0,
        "source": "",
        "correct": 9,
        "n": 10,
        "accuracy": 0.9,
        "ci_low": 0.6,
        "ci_high": 0.98,
    }
]


def history(epochs, val=True):
    return [
        {
            "epoch": e,
            "train_loss": 1.0 / (e + 1),
            "train_acc": 0.5 + 0.1 * e,
            "val_acc": 0.4 + 0.1 * e if val else math.nan,
            "seconds": 0.1,
        }
        for e in range(epochs)
    ]


def test_histories_are_plotted_and_embedded(tmp_path):
    histories = {"joint": history(3), "fg_only": history(2, val=False)}
    text = write_report(tmp_path, ROWS, histories=histories).read_text()
    assert (tmp_path / "training_curves.png").stat().st_size > 1000
    assert "## Training curves" in text and "![training curves](training_curves.png)" in text
    assert "| joint | 3 | 0.3333 | 0.700 | 0.600 |" in text
    assert "| fg_only | 2 | 0.5000 | 0.600 | - |" in text  # NaN validation left out


def test_modfuse_report_includes_the_runs_history(tmp_path, capsys):
    run = tmp_path / "run"
    write_report(run / "report", ROWS, manifest={"config": {"name": "quick"}})
    assert not (run / "report" / "training_curves.png").exists()
    (run / "history.json").write_text(json.dumps({"history": history(2), "best": {}}))
    assert main(["report", str(run)]) == 0
    assert "## Training curves" in capsys.readouterr().out
    assert (run / "report" / "training_curves.png").is_file()

"""What ``modfuse run`` and ``modfuse eval`` share after training: the sweep of the test set,
the report, and the training histories a run folder holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modfuse.cli.data import data_hashes, say
from modfuse.config.schema import ExperimentConfig
from modfuse.protocols import ClassIndexed

__all__ = ["evaluate_run", "run_histories"]


def evaluate_run(
    cfg: ExperimentConfig,
    model: Any,
    test: Any,
    report_dir: Path,
    reliance_data: Any = None,
    progress: bool = True,
    histories: Any = None,
) -> Path:
    """Sweep ``test`` (streamed) and write the report to ``report_dir``; modality reliance is
    measured on ``reliance_data`` (the cached test features, when there are some) or ``test``.
    The sweep's sanity flags and check statuses, and the training ``histories``, go into the
    report."""
    import torch

    from modfuse.reporting.report import write_report
    from modfuse.robustness import Sweep, modality_reliance, robustness_sweep

    sweeps = [Sweep(s.name, s.attack.as_spec(), s.strengths, s.source) for s in cfg.eval.sweeps]
    say(f"evaluating under {len(sweeps)} perturbation sweeps on {len(test)} test items")
    from modfuse import distributed

    # Random perturbations drawn from torch's global generator give the same numbers in
    # `modfuse run` and `modfuse eval`.
    torch.manual_seed(cfg.seed)
    rows = robustness_sweep(
        {cfg.name: model},
        test,
        sweeps,
        cfg.eval.batch_size,
        progress=progress,
        workers=cfg.data.workers,
    )
    if not distributed.is_main():
        return report_dir / "report.md"  # rank 0 writes it
    reliance_data = test if reliance_data is None else reliance_data
    reliance = {cfg.name: modality_reliance(model, reliance_data, cfg.eval.batch_size)}
    manifest = {
        "config": cfg.model_dump(mode="json"),
        "seed": cfg.seed,
        "class_map": test.class_to_index if isinstance(test, ClassIndexed) else None,
        "data": data_hashes(cfg, test),
    }
    return write_report(
        report_dir,
        rows,
        reliance=reliance,
        manifest=manifest,
        title=cfg.name,
        flags=rows.flags,
        checks=rows.checks,
        histories=histories,
    )


def run_histories(run: Path, name: str) -> dict[str, list] | None:
    """``{name: history}`` from the run's history.json (what the Trainer writes), if any."""
    from modfuse.io.tensor_files import read_json

    path = run / "history.json"
    if not path.is_file():
        return None
    data = read_json(path)
    history = data.get("history") if isinstance(data, dict) else None
    if not isinstance(history, list):
        raise ValueError(
            f"{path}: expected {{'history': [one record per epoch], ...}}, got "
            f"{type(data).__name__} without a 'history' list"
        )
    return {name: history} if history else None

"""The ``modfuse`` command: run / eval / report / list.

Examples::

    modfuse run examples/configs/quick_synthetic.yaml --out runs/quick
    modfuse eval runs/quick        # evaluate the saved model again (after changing sweeps)
    modfuse report runs/quick      # re-render report.md and plots from results.json
    modfuse list                   # registered encoders, fusions, attacks, regularizers
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modfuse.cli_checks import check_resume_fits, check_run_folder, validation_paragraph
from modfuse.cli_data import build_data, cached_features, say
from modfuse.config import (
    ExperimentConfig,
    ValidationError,
    check_device,
    load_config,
    save_config,
)
from modfuse.protocols import ClassIndexed


def _evaluate(
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

    from modfuse.evaluate import Sweep, modality_reliance, robustness_sweep
    from modfuse.report import write_report

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


def _run_histories(run: Path, name: str) -> dict[str, list] | None:
    """``{name: history}`` from the run's history.json (what the Trainer writes), if any."""
    from modfuse.tensor_files import read_json

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


def cmd_run(args: argparse.Namespace) -> int:
    import torch

    from modfuse import distributed
    from modfuse.train import Trainer

    if args.force and not args.resume:
        raise ValueError("--force goes with --resume (resume although the config differs)")
    cfg = load_config(args.config)
    distributed.init_from_env()  # under torchrun: join the process group
    out = Path(args.out or Path("runs") / cfg.name)
    main = distributed.is_main()  # only rank 0 writes
    # Checked by every rank before rank 0 writes anything.
    changes = check_run_folder(out, cfg.model_dump(mode="json"), args.resume, args.force)
    torch.manual_seed(cfg.seed)  # the seed covers the model's initial weights too
    try:
        model = cfg.model.build()
    except TypeError as err:  # a component whose arguments could not be checked at load
        raise ValueError(f"cannot build the model {args.config} describes: {err}") from err
    if args.resume:
        check_resume_fits(model, out)
    distributed.barrier()
    if main:
        if changes:
            say(f"--resume --force: resuming {out} with a changed config: " + "; ".join(changes))
            (out / "config.yaml").replace(out / "config.before-resume.yaml")
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
    train, test = build_data(cfg)
    if len(train.classes) != cfg.model.num_classes:
        raise ValueError(
            f"model.num_classes is {cfg.model.num_classes} but the data has "
            f"{len(train.classes)} classes {train.classes}"
        )
    t = cfg.train
    progress = not args.no_progress
    trainer = Trainer(
        model,
        epochs=t.epochs,
        batch_size=t.batch_size,
        lr=t.lr,
        weight_decay=t.weight_decay,
        regularizers=[r.as_spec() for r in t.regularizers],
        adversarial=t.adversarial.as_spec() if t.adversarial else None,
        adversarial_mix=t.adversarial_mix,
        modality_dropout=t.modality_dropout,
        unimodal_weight=t.unimodal_weight,
        seed=cfg.seed,
        run_dir=out,
        workers=cfg.data.workers,
        progress=progress,
        device=args.device or cfg.device,
    )  # moves the model to its device: the cache and the evaluation follow it
    fit_train, fit_test = train, test
    cached = cached_features(cfg, model, train, test, out, progress)
    if cached is not None:
        fit_train, fit_test = cached
    say(f"training {cfg.name} for {t.epochs} epochs on {len(train)} items")
    history = trainer.fit(fit_train, fit_test, resume=args.resume)
    if main:
        model.save(out / "model")
    report = _evaluate(
        cfg,
        model,
        test,
        out / "report",
        reliance_data=fit_test,
        progress=progress,
        histories={cfg.name: history} if history else None,
    )
    say(f"done; model in {out / 'model'}, report in {report}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import torch

    from modfuse import FusionModel, distributed

    run = Path(args.run_dir)
    cfg = load_config(run / "config.yaml")
    model = FusionModel.load(run / "model")
    device = args.device or cfg.device
    model.to(torch.device(device) if device else distributed.device())
    _, test = build_data(cfg)
    report_dir = Path(args.out) if args.out else run / "report"
    if args.out and report_dir.exists() and any(report_dir.iterdir()):
        raise FileExistsError(
            f"{report_dir} is not empty; give --out a new folder (the run's own report stays "
            f"in {run / 'report'})"
        )
    histories = _run_histories(run, cfg.name)
    report = _evaluate(
        cfg, model, test, report_dir, progress=not args.no_progress, histories=histories
    )
    say(f"report in {report}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from modfuse.report import write_report
    from modfuse.tensor_files import read_json

    run = Path(args.run_dir)
    results = run / "report" / "results.json"
    if not results.is_file():
        raise FileNotFoundError(f"{results} not found; run `modfuse eval {run}` first")
    data = read_json(results)
    manifest = read_json(run / "report" / "manifest.json")
    name = (manifest.get("config") or {}).get("name") or run.name
    # The sweep's flags and check statuses are read back: rows alone cannot say which checks
    # ran. A results.json older than the statuses gives None, and the rows are checked again.
    report = write_report(
        run / "report",
        data["rows"],
        feature_shifts=data["feature_shift"],
        reliance=data["reliance"],
        manifest=manifest,
        flags=data.get("flags", []),
        checks=data.get("checks"),
        histories=_run_histories(run, name),
        title=name,
    )
    print(report.read_text())
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from modfuse._registry import ATTACKS, ENCODERS, FUSIONS, REGULARIZERS

    for kind, names in (
        ("encoders", ENCODERS.names()),
        ("fusions", FUSIONS.names()),
        ("attacks", ATTACKS.names()),
        ("regularizers", REGULARIZERS.names()),
    ):
        shown = [f"{n}:<model>" if n == "timm" else n for n in names]
        print(f"{kind:13s} {', '.join(shown)}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="modfuse",
        description="Multimodal fusion models and their robustness when a modality is "
        "attacked, corrupted or missing.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train and evaluate the experiment a YAML config describes")
    run.add_argument("config", help="experiment YAML (see examples/configs/)")
    run.add_argument("--out", help="run folder (default: runs/<config name>)")
    run.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last checkpoint"
    )
    run.add_argument(
        "--force", action="store_true", help="with --resume: resume although the config differs"
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument(
        "--device", type=check_device, help="e.g. cuda, cuda:1, cpu (overrides the config)"
    )
    run.set_defaults(func=cmd_run)
    ev = sub.add_parser("eval", help="evaluate a finished run's model again, per its config.yaml")
    ev.add_argument("run_dir")
    ev.add_argument("--device", type=check_device, help="e.g. cuda, cpu (overrides the config)")
    ev.add_argument("--no-progress", action="store_true", help="no progress bars")
    ev.add_argument(
        "--out", help="write the new report to this (new) folder; default: replace the run's own"
    )
    ev.set_defaults(func=cmd_eval)
    rep = sub.add_parser("report", help="re-render a run's report from its results.json")
    rep.add_argument("run_dir")
    rep.set_defaults(func=cmd_report)
    ls = sub.add_parser("list", help="list registered encoders, fusions, attacks, regularizers")
    ls.set_defaults(func=cmd_list)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``modfuse`` command; returns the exit code."""
    args = parser().parse_args(argv)
    from modfuse import distributed

    try:
        code = int(args.func(args))
        distributed.shutdown()  # under torchrun: every rank leaves together
        return code
    except ValidationError as err:
        print(f"modfuse: invalid config:\n{validation_paragraph(err)}", file=sys.stderr)
        return 2
    except (ValueError, KeyError, OSError) as err:  # OSError: a folder or file we cannot use
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"modfuse: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

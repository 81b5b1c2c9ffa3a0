"""The ``modfuse`` command: run / eval / report / list / study.

Examples::

    modfuse run examples/configs/quick_synthetic.yaml --out runs/quick
    modfuse eval runs/quick        # evaluate the saved model again (after changing sweeps)
    modfuse report runs/quick      # re-render report.md and plots from results.json
    modfuse list                   # registered encoders, fusions, attacks, regularizers
    modfuse study examples/studies/three_modalities.yaml --quick   # a whole study
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modfuse.cli.checks import check_resume_fits, check_run_folder, validation_paragraph
from modfuse.cli.data import build_data, cached_features, say
from modfuse.cli.evaluate import evaluate_run, run_histories
from modfuse.config.schema import (
    ExperimentConfig,
    ValidationError,
    check_device,
    load_config,
    save_config,
)
from modfuse.devices import check_device_available
from modfuse.io.folder_lock import claim_folder


def cmd_run(args: argparse.Namespace) -> int:
    from modfuse import distributed

    if args.force and not args.resume:
        raise ValueError("--force goes with --resume (resume although the config differs)")
    cfg = load_config(args.config)
    device = args.device or cfg.device
    if device is not None:
        check_device_available(device)  # before anything is written
    distributed.init_from_env()  # under torchrun: join the process group
    out = Path(args.out or Path("runs") / cfg.name)
    main = distributed.is_main()  # only rank 0 writes
    # Rank 0 holds the folder until the command ends: a second `modfuse run` into it stops
    # here instead of passing the checks below beside this one.
    with claim_folder(out, "a run folder") if main else contextlib.nullcontext():
        return _run(args, cfg, out, main, device)


def _run(
    args: argparse.Namespace, cfg: ExperimentConfig, out: Path, main: bool, device: Any
) -> int:
    """The body of ``modfuse run``, with the run folder claimed."""
    import torch

    from modfuse import distributed
    from modfuse.data.split import holdout
    from modfuse.training.trainer import Trainer

    # Checked by every rank before rank 0 writes anything.
    changes = check_run_folder(out, cfg.model_dump(mode="json"), args.resume, args.force)
    torch.manual_seed(cfg.seed)  # the seed covers the model's initial weights too
    try:
        model = cfg.model.build()
    except TypeError as err:  # a component whose arguments could not be checked at load
        raise ValueError(f"cannot build the model {args.config} describes: {err}") from err
    if args.resume:
        check_resume_fits(model, out)
    # The data is checked before the run folder is written: a config refused here can be
    # fixed and run again into the same folder.
    root, run_folder = Path(cfg.data.root).resolve(), out.resolve()
    if cfg.data.kind == "synthetic" and (root == run_folder or run_folder in root.parents):
        raise ValueError(
            f"data.root {cfg.data.root!r} is inside the run folder {out}: the synthetic world "
            "and the run's files would mix; give the data another root"
        )
    train, test = build_data(cfg)
    if len(train.classes) != cfg.model.num_classes:
        raise ValueError(
            f"model.num_classes is {cfg.model.num_classes} but the data has "
            f"{len(train.classes)} classes {train.classes}"
        )
    fit_train, val = holdout(train, cfg.train.val_fraction, cfg.seed)  # refused if too few
    distributed.barrier()
    if main:
        if changes:
            say(f"--resume --force: resuming {out} with a changed config: " + "; ".join(changes))
            (out / "config.yaml").replace(out / "config.before-resume.yaml")
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
    t = cfg.train
    progress = not args.no_progress
    trainer = Trainer(
        model,
        **t.trainer_arguments(),
        seed=cfg.seed,
        run_dir=out,
        workers=cfg.data.workers,
        progress=progress,
        device=device,
    )  # moves the model to its device: the cache and the evaluation follow it
    # The epoch is picked on a split of the training data; the test set is first read by the
    # evaluation below, after training (its features too).
    features = cached_features(cfg, model, train, out, progress)
    if features is not None:  # the same items, as cached features
        fit_train, val = holdout(features, t.val_fraction, cfg.seed)
    say(
        f"training {cfg.name} for {t.epochs} epochs on {len(fit_train)} items; "
        f"{len(val)} training items held out to pick the epoch (train.val_fraction)"
    )
    history = trainer.fit(fit_train, val, resume=args.resume)
    if main:
        model.save(out / "model")
    test_features = cached_features(cfg, model, test, out, progress, quiet=True)
    report = evaluate_run(
        cfg,
        model,
        test,
        out / "report",
        reliance_data=test_features,
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
    device = args.device or cfg.device
    if device is not None:
        check_device_available(device)
    model = FusionModel.load(run / "model")
    model.to(torch.device(device) if device else distributed.device())
    _, test = build_data(cfg)
    report_dir = Path(args.out) if args.out else run / "report"
    if args.out and report_dir.exists() and any(report_dir.iterdir()):
        raise FileExistsError(
            f"{report_dir} is not empty; give --out a new folder (the run's own report stays "
            f"in {run / 'report'})"
        )
    histories = run_histories(run, cfg.name)
    report = evaluate_run(
        cfg, model, test, report_dir, progress=not args.no_progress, histories=histories
    )
    say(f"report in {report}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from modfuse.io.tensor_files import read_json
    from modfuse.reporting.report import read_baselines, write_report

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
        histories=run_histories(run, name),
        title=name,
        baselines=read_baselines(data),
        per_class=data.get("per_class"),
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


def cmd_study(args: argparse.Namespace) -> int:
    from modfuse.study import Study

    study = Study.from_yaml(args.file, quick=args.quick, seeds=args.seeds)
    out = Path(args.out or Path("runs") / study.config.name)
    found = study.run(out, resume=args.resume, force=args.force, progress=not args.no_progress)
    for h in found["hypotheses"]:
        say(f"{h['claim']}: {h['verdict']} ({h['detail']})")
    say(f"done; report in {out / 'report.md'}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="modfuse",
        description="Multimodal fusion models and their robustness when a modality is "
        "attacked, corrupted or missing.",
    )
    # Every command takes --import: the user's modules register their components first.
    shared = argparse.ArgumentParser(add_help=False)
    shared.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first (it registers your encoders, fusions, attacks or "
        "regularizers); repeat for several",
    )
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run", parents=[shared], help="train and evaluate the experiment a YAML config describes"
    )
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
    ev = sub.add_parser(
        "eval", parents=[shared], help="evaluate a finished run's model again, per its config.yaml"
    )
    ev.add_argument("run_dir")
    ev.add_argument("--device", type=check_device, help="e.g. cuda, cpu (overrides the config)")
    ev.add_argument("--no-progress", action="store_true", help="no progress bars")
    ev.add_argument(
        "--out", help="write the new report to this (new) folder; default: replace the run's own"
    )
    ev.set_defaults(func=cmd_eval)
    rep = sub.add_parser(
        "report", parents=[shared], help="re-render a run's report from its results.json"
    )
    rep.add_argument("run_dir")
    rep.set_defaults(func=cmd_report)
    ls = sub.add_parser(
        "list", parents=[shared], help="list registered encoders, fusions, attacks, regularizers"
    )
    ls.set_defaults(func=cmd_list)
    st = sub.add_parser(
        "study",
        parents=[shared],
        help="run a study: models x seeds x threat models x attacks, hypotheses, one report",
        description="Run the study a YAML file declares (see the Studies page of the docs): "
        "train every model for every seed, evaluate each under every attack and threat model "
        "(each modality alone by default), judge the hypotheses on the seed means, and write "
        "results.csv, results.json, report.md and manifest.json into the study folder.",
    )
    st.add_argument("file", help="study YAML (see examples/studies/)")
    st.add_argument("--out", help="study folder (default: runs/<study name>)")
    st.add_argument(
        "--resume", action="store_true", help="continue the study in --out: redo only what is "
        "unfinished"
    )
    st.add_argument(
        "--force", action="store_true", help="with --resume: resume although the study changed "
        "(the units whose settings changed are redone)"
    )
    st.add_argument("--seeds", type=int, nargs="+", help="these seeds instead of the study's")
    st.add_argument(
        "--quick", action="store_true", help="merge the study's quick: section over it (without "
        "one: its first seed only)"
    )
    st.add_argument("--no-progress", action="store_true", help="no progress bar")
    st.set_defaults(func=cmd_study)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``modfuse`` command; returns the exit code."""
    args = parser().parse_args(argv)
    from modfuse import distributed
    from modfuse.config.imports import import_modules

    try:
        import_modules(args.imports)
        code = int(args.func(args))
        distributed.shutdown()  # under torchrun: every rank leaves together
        return code
    except ValidationError as err:
        print(f"modfuse: invalid config:\n{validation_paragraph(err)}", file=sys.stderr)
        return 2
    except (ValueError, KeyError, OSError, ImportError) as err:  # OSError: a file or folder
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"modfuse: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

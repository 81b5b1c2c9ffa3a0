"""Run a study, unit by unit: train every model for every seed, evaluate each, then judge.

A killed study started again with ``resume=True`` redoes only the units without their
finished marker (a unit killed midway continues from its own checkpoint or resume file) and
ends with byte-identical results files; a changed study refuses to resume unless ``force``,
and then redoes only the units whose settings changed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from modfuse.config.loading import load_yaml_text
from modfuse.io.folder_lock import claim_folder
from modfuse.io.tensor_files import atomic_write_json, read_json
from modfuse.reporting.manifest import environment
from modfuse.study.data import class_count, study_data
from modfuse.study.report import write_study_files
from modfuse.study.results import judge, seed_means, single_source_table
from modfuse.study.schema import StudyConfig
from modfuse.study.units import Unit, digest, study_units
from modfuse.study.work import evaluate_model, train_model

__all__ = ["Study", "StudyChangedError"]


class StudyChangedError(ValueError):
    """The study in a folder is not the one asked to resume (pass force to resume anyway)."""


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        nested = isinstance(v, Mapping) and isinstance(out.get(k), Mapping)
        out[k] = _merge(out[k], v) if nested else v
    return out


class Study:
    """A declarative robustness study (:class:`modfuse.study.schema.StudyConfig`).

    Args:
        config: The study, as a config or a mapping (YAML read into a dict).

    Example:
        >>> import tempfile
        >>> study = Study({
        ...     "data": {"callable": "modfuse.study.toy:three_modalities",
        ...              "kwargs": {"n_train": 60, "n_test": 20}},
        ...     "encoders": {m: {"name": "mlp", "in_dim": 4, "hidden": [8]} for m in "abc"},
        ...     "models": {"joint": {"modalities": ["a", "b", "c"]},
        ...                "a_only": {"modalities": ["a"]}},
        ...     "train": {"epochs": 1},
        ...     "evaluation": {"attacks": [{"name": "noise", "attack": {"name": "noise"},
        ...                                 "strengths": [1.0]}]},
        ... })
        >>> found = study.run(tempfile.mkdtemp(), progress=False)
        >>> sorted({(r["model"], r["threat"]) for r in found["means"] if r["threat"]})[:3]
        [('a_only', 'a'), ('joint', 'a'), ('joint', 'b')]
    """

    def __init__(self, config: StudyConfig | Mapping[str, Any]) -> None:
        self.config = (
            config if isinstance(config, StudyConfig) else StudyConfig.model_validate(dict(config))
        )

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, quick: bool = False,
                  seeds: list[int] | None = None) -> Study:
        """A study from a YAML file; ``quick`` merges its ``quick:`` section over it (without
        one: its first seed only); ``seeds`` replaces its seeds."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"study file {path} not found")
        data = load_yaml_text(path.read_text())
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping at the top level, got "
                             f"{type(data).__name__}")
        if quick:
            over = data.get("quick") or {"seeds": list(data.get("seeds") or [0])[:1]}
            data = _merge(data, over)
        if seeds:
            data = {**data, "seeds": list(seeds)}
        return cls(data)

    def run(self, out: str | os.PathLike, resume: bool = False, force: bool = False,
            progress: bool = True) -> dict[str, Any]:
        """Run every unfinished unit into ``out`` and write the study's files there.

        Returns:
            What results.json holds: ``rows`` (per model, seed, threat model, attack and
            strength), ``means`` (over seeds), ``single_source``, ``hypotheses``, ``flags``,
            ``checks``, ``baselines`` and the training ``histories``.

        Raises:
            FileExistsError: ``out`` holds files and ``resume`` is off.
            StudyChangedError: ``out`` holds another study and ``force`` is off.
        """
        out = Path(out)
        with claim_folder(out, "a study folder"):
            return self._run(out, resume, force, progress)

    def _run(self, out: Path, resume: bool, force: bool, progress: bool) -> dict[str, Any]:
        cfg = self.config
        config_json = cfg.model_dump(mode="json", exclude={"quick"})
        self._check_folder(out, config_json, resume, force)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "study.json", {"key": digest(config_json), "config": config_json})
        units = study_units(cfg)
        data: dict[int, tuple[Any, Any]] = {}  # per data seed
        timings: dict[str, float] = {}
        found: dict[tuple[str, int], dict] = {}
        bar = tqdm(units, desc=f"study {cfg.name}", unit="unit", disable=not progress)
        for unit in bar:
            bar.set_postfix_str(unit.label)
            if not unit.is_done(out):
                started = time.perf_counter()
                self._do(unit, out, data)
                timings[unit.label] = time.perf_counter() - started
                unit.finish(out, timings[unit.label])
            if unit.kind == "evaluate":
                found[(unit.model, unit.seed)] = read_json(unit.folder(out) / "rows.json")
        order = list(cfg.models)  # rows seed by seed, models in the study's order
        keys = sorted(found, key=lambda k: (cfg.seeds.index(k[1]), order.index(k[0])))
        rows = [r for key in keys for r in found[key]["rows"]]
        means = seed_means(rows)
        first = next(iter(found.values()))
        result = {
            "rows": rows,
            "means": means,
            "single_source": single_source_table(cfg, means),
            "hypotheses": [judge(h, means, rows) for h in cfg.hypotheses],
            "flags": [{**f, "seed": s} for (m, s), v in sorted(found.items()) for f in v["flags"]],
            "checks": {f"{m}/seed{s}": v["checks"] for (m, s), v in sorted(found.items())},
            "baselines": first["baselines"],
            "test_items": first["rows"][0]["n"] if first["rows"] else 0,
            # Without the epochs' wall times, which differ run to run (the manifest has time).
            "histories": {
                f"{m}/seed{s}": [{k: e[k] for k in e if k != "seconds"} for e in v["history"]]
                for (m, s), v in sorted(found.items())
                if v["history"]
            },
        }
        manifest = {"config": config_json, "environment": environment(),
                    "seconds": timings, "units": [u.label for u in units]}
        write_study_files(out, cfg, result, manifest)
        return result

    @staticmethod
    def _check_folder(out: Path, config_json: dict, resume: bool, force: bool) -> None:
        saved = out / "study.json"
        if not saved.is_file():
            if out.exists() and any(p for p in out.iterdir() if not p.name.startswith(".")):
                raise FileExistsError(f"{out} holds files but no study.json; give a new folder")
            return
        if not resume:
            raise FileExistsError(f"{out} holds a study already; pass --resume to continue it "
                                  "or give a new folder")
        if read_json(saved).get("key") != digest(config_json) and not force:
            raise StudyChangedError(
                f"{out} holds another version of this study (its config differs); pass --force "
                "to resume anyway (the units whose settings changed are redone)"
            )

    def _do(self, unit: Unit, out: Path, data: dict[int, tuple[Any, Any]]) -> None:
        cfg = self.config
        data_seed = unit.seed if "data" in cfg.vary else cfg.seeds[0]
        if data_seed not in data:
            data[data_seed] = study_data(cfg.data, data_seed)
        train, test = data[data_seed]
        folder = unit.start(out)
        trained = Unit("train", unit.model, unit.seed, "").folder(out)
        if unit.kind == "train":
            classes = cfg.num_classes or class_count(train)
            train_model(cfg, unit.model, unit.seed, train, folder, out / "cache", classes)
        else:
            evaluate_model(cfg, unit.model, unit.seed, test, trained, folder)

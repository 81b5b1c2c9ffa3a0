"""Two processes with gloo on CPU: exact sharded evaluation and synchronised training."""

import json
import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from modfuse import FusionModel
from modfuse.attacks import FGSM, GaussianBlur
from modfuse.data import FeatureCache, FeatureDataset, StackedDataset
from modfuse.robustness import Sweep, robustness_sweep
from modfuse.training.trainer import Trainer


def eval_setup():
    torch.manual_seed(0)
    enc = {"name": "small_cnn", "width": 4, "depth": 2}
    model = FusionModel({"fg": enc, "bg": enc}, num_classes=3).eval()
    g = torch.Generator().manual_seed(1)
    n = 37  # not a multiple of 2: no padding item may be counted twice
    data = StackedDataset(
        {"fg": torch.rand(n, 3, 16, 16, generator=g), "bg": torch.rand(n, 3, 16, 16, generator=g)},
        torch.randint(0, 3, (n,), generator=g),
    )
    sweeps = [
        Sweep("blur", GaussianBlur(targets=("fg",)), [1.0, 2.0]),
        Sweep("fgsm", FGSM(targets=("fg",)), [0.01, 0.05]),
    ]
    return {"m": model}, data, sweeps


def train_setup():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(60, 8, generator=g)
    data = FeatureDataset({"a": x, "b": torch.randn(60, 8, generator=g)}, (x[:, 0] > 0).long())
    torch.manual_seed(0)
    mlp = {"name": "mlp", "in_dim": 2, "hidden": [8]}
    return FusionModel({"a": mlp, "b": mlp}, "gated", num_classes=2, fusion_dim=4), data


def worker(rank: int, world: int, rdv: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rdv}", rank=rank, world_size=world)
    try:
        models, data, sweeps = eval_setup()
        rows = robustness_sweep(models, data, sweeps, batch_size=8, progress=False)
        model, feats = train_setup()
        Trainer(
            model, epochs=2, batch_size=8, lr=0.05, progress=False, workers=0, device="cpu"
        ).fit(feats, feats)
        state = {k: v.tolist() for k, v in model.state_dict().items()}
        models, data, _ = eval_setup()
        cached = FeatureCache(os.path.join(out, "cache"), batch_size=4, progress=False)
        feats = cached.features(models["m"], data)
        with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
            json.dump(
                {
                    "rows": rows,
                    "state": state,
                    "computed": cached.computed,
                    "fg": feats.features["fg"].tolist(),
                    "labels": feats.labels.tolist(),
                },
                f,
            )
    finally:
        dist.destroy_process_group()


def test_two_ranks_match_one_process_and_stay_in_sync(tmp_path):
    mp.spawn(worker, args=(2, str(tmp_path / "rdv"), str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    models, data, sweeps = eval_setup()
    single = robustness_sweep(models, data, sweeps, batch_size=8, progress=False)
    key = lambda r: (r["perturbation"], r["strength"])  # noqa: E731
    for got in (ranks[0]["rows"], ranks[1]["rows"]):
        assert {key(r): (r["correct"], r["n"]) for r in got} == {
            key(r): (r["correct"], r["n"]) for r in single
        }
    assert all(r["n"] == 37 for r in ranks[0]["rows"])
    # Feature cache: built in shards, gathered, equal to one process's features.
    single_feats = FeatureCache(tmp_path / "single", progress=False).features(models["m"], data)
    for r in ranks:
        assert r["computed"] == ["bg", "fg"]
        torch.testing.assert_close(
            torch.tensor(r["fg"]), single_feats.features["fg"], atol=1e-5, rtol=0
        )
        assert r["labels"] == single_feats.labels.tolist()
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 2  # written once, by rank 0
    # Training: both ranks end with the same, finite parameters, and they moved.
    fresh, _ = train_setup()
    moved = False
    for k, v in ranks[0]["state"].items():
        a, b = torch.tensor(v), torch.tensor(ranks[1]["state"][k])
        assert torch.isfinite(a).all() and torch.equal(a, b), k
        moved |= not torch.equal(a, fresh.state_dict()[k])
    assert moved


def test_torchrun_runs_the_modfuse_command(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    root = Path(__file__).parents[1]
    cfg = yaml.safe_load((root / "examples" / "configs" / "quick_synthetic.yaml").read_text())
    cfg["data"].update(root="data", n_train=60, n_test=30)
    cfg["train"]["epochs"] = 1
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "modfuse",
            "run",
            "cfg.yaml",
            "--out",
            "run",
            "--no-progress",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)},
    )
    assert done.returncode == 0, done.stderr[-6000:]
    assert done.stdout.count("done; model in") == 1  # rank 0 alone speaks and writes
    rows = json.loads((tmp_path / "run" / "report" / "results.json").read_text())["rows"]
    assert {r["n"] for r in rows} == {30}  # both ranks' shards, counted once
    FusionModel.load(tmp_path / "run" / "model")

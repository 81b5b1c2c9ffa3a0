"""Two gloo processes: a sweep stops on every rank when the ranks hold different weights."""

import json
import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from modfuse import FusionModel
from modfuse.attacks import GaussianBlur
from modfuse.data import StackedDataset
from modfuse.robustness import Sweep, robustness_sweep


def setup():
    torch.manual_seed(0)
    enc = {"name": "small_cnn", "width": 4, "depth": 2}
    models = {
        "joint": FusionModel({"fg": enc, "bg": enc}, num_classes=3).eval(),
        "fg_only": FusionModel({"fg": enc}, num_classes=3).eval(),
    }
    g = torch.Generator().manual_seed(1)
    n = 9
    data = StackedDataset(
        {"fg": torch.rand(n, 3, 16, 16, generator=g), "bg": torch.rand(n, 3, 16, 16, generator=g)},
        torch.randint(0, 3, (n,), generator=g),
    )
    return models, data, [Sweep("blur", GaussianBlur(targets=("fg",)), [1.0])]


def worker(rank: int, world: int, rdv: str, out: str, perturb: bool) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rdv}", rank=rank, world_size=world)
    result: dict = {}
    try:
        models, data, sweeps = setup()
        if perturb and rank == 1:
            with torch.no_grad():
                next(models["joint"].parameters()).add_(1e-3)  # as if it read a stale file
        try:
            rows = robustness_sweep(models, data, sweeps, batch_size=4, progress=False)
            result = {"error": None, "n": [r["n"] for r in rows]}
        except RuntimeError as err:
            result = {"error": str(err)}
    finally:
        with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
            json.dump(result, f)
        dist.destroy_process_group()


def run_two(tmp_path, perturb: bool) -> list[dict]:
    mp.spawn(worker, args=(2, str(tmp_path / "rdv"), str(tmp_path), perturb), nprocs=2, join=True)
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]


def test_ranks_with_different_weights_stop_on_every_rank(tmp_path):
    for got in run_two(tmp_path, perturb=True):
        assert got["error"] is not None, "the sweep ran on different weights"
        assert "'joint' (ranks [0]" in got["error"] and "ranks [1]" in got["error"]
        assert "fg_only" not in got["error"]  # only the model that differs is named


def test_ranks_with_the_same_weights_evaluate(tmp_path):
    for got in run_two(tmp_path, perturb=False):
        assert got["error"] is None
        assert set(got["n"]) == {9}  # both shards counted, once


def test_one_process_has_nothing_to_compare():
    from modfuse.distributed import check_same_weights

    models, _, _ = setup()
    check_same_weights(models)

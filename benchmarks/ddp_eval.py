"""Robustness sweep: 2 processes (torch.distributed, gloo) vs 1 process, same data and model.

Each process of the pair uses half the cores (1 thread each on a 2-core machine); the single
process uses them all. Times exclude process start-up (measured between barriers).

Run: python benchmarks/ddp_eval.py [--n 512]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from modfuse import FusionModel
from modfuse.attacks import FGSM, GaussianBlur
from modfuse.data import StackedDataset
from modfuse.robustness import Sweep, robustness_sweep


def setup(n: int):
    torch.manual_seed(0)
    enc = {"name": "small_cnn", "width": 32, "depth": 3}
    model = FusionModel({"fg": enc, "bg": enc}, num_classes=6).eval()
    g = torch.Generator().manual_seed(0)
    data = StackedDataset(
        {k: torch.rand(n, 3, 48, 48, generator=g) for k in ("fg", "bg")},
        torch.randint(0, 6, (n,), generator=g),
    )
    sweeps = [
        Sweep("blur", GaussianBlur(targets=("fg",)), [1.0, 2.0, 4.0]),
        Sweep("fgsm", FGSM(targets=("fg",)), [2 / 255, 8 / 255]),
    ]
    return {"m": model}, data, sweeps


def worker(rank: int, world: int, rdv: str, n: int, out: str) -> None:
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // world))
    dist.init_process_group("gloo", init_method=f"file://{rdv}", rank=rank, world_size=world)
    models, data, sweeps = setup(n)
    dist.barrier()
    start = time.perf_counter()
    rows = robustness_sweep(models, data, sweeps, batch_size=128, progress=False)
    dist.barrier()
    if rank == 0:
        with open(out, "w") as f:
            f.write(f"{time.perf_counter() - start} {sum(r['correct'] for r in rows)}")
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512)
    args = parser.parse_args()
    models, data, sweeps = setup(args.n)
    start = time.perf_counter()
    rows = robustness_sweep(models, data, sweeps, batch_size=128, progress=False)
    single = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "t")
        mp.spawn(worker, args=(2, os.path.join(tmp, "rdv"), args.n, out), nprocs=2, join=True)
        pair, correct = open(out).read().split()
    same = int(correct) == sum(r["correct"] for r in rows)
    print(f"robustness sweep, {args.n} images, 5 points, {os.cpu_count()} cores")
    print(f"1 process  ({torch.get_num_threads()} threads)   {single:7.2f} s")
    print(f"2 processes (gloo)        {float(pair):7.2f} s")
    print(f"ratio                     {single / float(pair):7.2f}x   same counts: {same}")


if __name__ == "__main__":
    main()

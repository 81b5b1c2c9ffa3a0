"""The real-COCO path at 224 px: peak memory at N and 8N items, and feature-cache throughput.

1. Memory. ``modfuse run`` with ``data.kind: coco`` (two frozen ``timm:resnet18`` encoders,
   the feature cache, the head trained on cached features, a streamed sweep of foreground blur
   and FGSM) on COCO-layout folders of N and 8N images of 224 px written by the synthetic
   generator, each run in a fresh process. Baseline: the N run. Goal: the 8N run peaks at most
   1.25x the N run (nothing grows with the dataset but the cached features, 4 KB an item).
2. Throughput. ``FeatureCache`` extraction over the 8N training split (JPEG decode, masks,
   both views, both ResNet-18s) against a bare timm forward of the same two networks over the
   same images already decoded into tensors. Goal: >= 0.8x (pipeline overhead <= 25%).

Run: python benchmarks/memory.py [--n 32] [--batch 16]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from modfuse import FusionModel
from modfuse.data import CocoContext, FeatureCache, StackedDataset, make_loader
from modfuse.data.loader import default_workers
from modfuse.data.synthetic import make_synthetic_coco

SIZE = 224
#: Runs the command in this process and prints its peak RSS (KiB). With DataLoader workers
#: (machines of more than 2 cores) each worker's own peak is its decoding, not the dataset.
MEASURE = """
import resource, sys
from modfuse.cli.commands import main
code = main(sys.argv[1:])
print(f"PEAK_RSS_KIB {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}")
sys.exit(code)
"""


def write_config(root: Path, path: Path, batch: int) -> None:
    # Random frozen weights: memory and throughput do not depend on what the weights are.
    enc = {"name": "timm:resnet18", "freeze": True, "random_ok": True}
    cfg = {
        "name": "memory",
        "seed": 0,
        "data": {"kind": "coco", "root": str(root)},  # all 6 classes: one item per image
        "model": {
            "encoders": {"fg": enc, "bg": enc},
            "fusion": "concat",
            "num_classes": 6,
            "views": {"size": SIZE},
        },
        "train": {"epochs": 2, "batch_size": batch},
        "eval": {
            "batch_size": batch,
            "sweeps": [
                {
                    "name": "fg_blur",
                    "attack": {"name": "blur", "targets": ["fg"]},
                    "strengths": [2.0],
                },
                {
                    "name": "fg_fgsm",
                    "attack": {"name": "fgsm", "targets": ["fg"]},
                    "strengths": [8 / 255],
                },
            ],
        },
    }
    path.write_text(yaml.safe_dump(cfg))


def peak_rss(config: Path, out: Path) -> tuple[float, float]:
    """(peak RSS MiB, seconds) of one ``modfuse run`` in a fresh process."""
    start = time.perf_counter()
    cmd = [sys.executable, "-c", MEASURE, "run", str(config), "--out", str(out), "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"modfuse run failed:\n{done.stdout}\n{done.stderr}")
    line = next(x for x in done.stdout.splitlines() if x.startswith("PEAK_RSS_KIB"))
    peak = int(line.split()[1]) / 1024
    rows = json.loads((out / "report" / "results.json").read_text())["rows"]
    if not rows or any(r["n"] == 0 for r in rows):
        raise RuntimeError("the run evaluated nothing")
    return peak, seconds


def throughput(root: Path, batch: int, cache_dir: Path) -> tuple[float, float, int]:
    """(pipeline items/s, bare forward items/s, items) over the training split."""
    data = CocoContext(root / "train2017", root / "annotations/instances_train2017.json", size=SIZE)
    enc = {"name": "timm:resnet18", "freeze": True}
    torch.manual_seed(0)
    model = FusionModel({"fg": enc, "bg": enc}, "concat", num_classes=6).eval()
    # Bare: the same networks (normalization included) on tensors decoded beforehand.
    decoded = StackedDataset.from_dataset(data, ["fg", "bg"], batch_size=batch)
    batches = list(make_loader(decoded, batch))
    nets = {m: model.encoders[m] for m in ("fg", "bg")}

    def bare() -> None:
        with torch.no_grad():
            for b in batches:
                for m, net in nets.items():
                    net(b[m])

    def pipeline(run: int) -> None:
        FeatureCache(cache_dir / str(run), batch_size=batch, progress=False).features(model, data)

    bare()  # warm-up
    t_bare, t_pipe = [], []
    for run in range(3):  # round-robin, so that drift of the machine hits both alike
        start = time.perf_counter()
        pipeline(run)
        t_pipe.append(time.perf_counter() - start)
        start = time.perf_counter()
        bare()
        t_bare.append(time.perf_counter() - start)
    n = len(data)
    return n / sorted(t_pipe)[1], n / sorted(t_bare)[1], n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--n", type=int, default=32, help="train (and test) images of the small run: >= 2 batches"
    )
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--throughput-only", action="store_true", help="skip the two memory runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        peaks = {}
        for scale in (8,) if args.throughput_only else (1, 8):
            n = args.n * scale
            # Both splits fill whole batches in both runs: the per-batch memory is the same.
            root = make_synthetic_coco(tmp / f"coco{scale}", n_train=n, n_test=n, size=SIZE)
            if args.throughput_only:
                continue
            config = tmp / f"memory{scale}.yaml"
            write_config(root, config, args.batch)
            peaks[scale] = peak_rss(config, tmp / f"run{scale}")
        pipe, bare, items = throughput(tmp / "coco8", args.batch, tmp / "cache")
    print(
        f"modfuse run, data.kind coco, 2 x frozen timm:resnet18 at {SIZE} px, batch {args.batch}, "
        f"torch threads {torch.get_num_threads()}"
    )
    print(f"  DataLoader workers: {default_workers()} (the machine's default)")
    for scale, (peak, seconds) in peaks.items():
        n = args.n * scale
        print(f"  {n:5d} train + {n:5d} test images: peak RSS {peak:7.0f} MiB, {seconds:5.0f} s")
    if peaks:
        ratio = peaks[8][0] / peaks[1][0]
        print(f"  memory ratio 8N / N                {ratio:6.3f} (goal <= 1.25)")
    print(f"feature-cache extraction over {items} images (decode, views, both networks)")
    print(f"  pipeline                            {pipe:6.1f} images/s")
    print(f"  bare forward on decoded tensors     {bare:6.1f} images/s")
    print(f"  throughput ratio                    {pipe / bare:6.3f} (goal >= 0.8)")


if __name__ == "__main__":
    main()

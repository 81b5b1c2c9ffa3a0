"""One epoch of fusion-head training: on cached features vs recomputing the frozen encoders.

Two frozen ``timm:resnet18`` encoders (fg, bg) at 64 px on the synthetic world; the head is
the paper's concat classifier. The cached epoch reads features from a FeatureCache; the
baseline runs the encoders on every batch, as a training loop without a cache does.

Run: python benchmarks/cache.py [--n 512] [--batch 64]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import median_seconds  # noqa: E402

from modfuse import FusionModel  # noqa: E402
from modfuse.data import CocoContext, FeatureCache, make_loader  # noqa: E402
from modfuse.data.synthetic import make_synthetic_coco  # noqa: E402


def head_epoch(model: FusionModel, loader, encode: bool) -> None:
    opt = torch.optim.AdamW(model.fusion.parameters(), lr=1e-3)
    for batch in loader:
        inputs = model.select(batch)
        if encode:
            with torch.no_grad():
                inputs = model.encode(inputs)
        loss = torch.nn.functional.cross_entropy(model.fuse(inputs), batch["label"])
        opt.zero_grad()
        loss.backward()
        opt.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = make_synthetic_coco(Path(tmp) / "world", n_train=args.n, n_test=0, size=64)
        data = CocoContext(
            root / "train2017", root / "annotations/instances_train2017.json", size=64
        )
        enc = {"name": "timm:resnet18", "freeze": True}
        model = FusionModel({"fg": enc, "bg": enc}, "concat", num_classes=6).eval()
        cache = FeatureCache(Path(tmp) / "cache", batch_size=args.batch, progress=False)
        start = time.perf_counter()
        feats = cache.features(model, data)
        build = time.perf_counter() - start
        cached_loader = make_loader(feats, args.batch, shuffle=True)
        raw_loader = make_loader(data, args.batch, shuffle=True)
        t_cached = median_seconds(lambda: head_epoch(model, cached_loader, False), repeats=5)
        t_raw = median_seconds(lambda: head_epoch(model, raw_loader, True), repeats=2, warmup=0)
    print(
        f"{args.n} images of 64px, 2 x frozen timm:resnet18, batch {args.batch}, "
        f"torch threads {torch.get_num_threads()}"
    )
    print(f"cache build (once)            {build:8.2f} s")
    print(f"epoch, recomputing encoders   {t_raw:8.3f} s")
    print(f"epoch, cached features        {t_cached:8.3f} s")
    print(f"ratio                         {t_raw / t_cached:8.1f}x")


if __name__ == "__main__":
    main()

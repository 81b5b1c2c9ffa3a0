"""A 5-value FGSM sweep on the foreground: modfuse's robustness_sweep vs a naive sweep.

Naive: each eps is a separate attack on the full model (every step recomputes both
branches, as a single-input attack library does) followed by a full forward pass to score it.
modfuse: one gradient for all five eps (FGSM's direction does not depend on eps), the
background encoded once per batch for the whole sweep, with its default sanity checks (model
probes on 32 items of the first batch, which read FGSM's clean gradient and the clean features
from the sweep itself; the stochastic check on 8 of them). Also timed with ``sanity=False``,
to give the checks' overhead.

Prints the median and the fastest of the interleaved repeats: on a shared machine a run is
only ever slowed down by other work, so the fastest runs are the steadier estimate of the cost
of each side, and the medians are given beside them.

Run: python benchmarks/sweep.py [--n 256] [--batch 128] [--repeats 9]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import interleaved_times  # noqa: E402

from modfuse import FusionModel  # noqa: E402
from modfuse.attacks import FGSM, TorchAttacksAdapter  # noqa: E402
from modfuse.data import StackedDataset, make_loader  # noqa: E402
from modfuse.robustness import Sweep, robustness_sweep  # noqa: E402

EPS = [1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    torch.manual_seed(0)
    enc = {"name": "small_cnn", "width": 32, "depth": 3}
    model = FusionModel({"fg": enc, "bg": enc}, num_classes=6).eval()
    data = StackedDataset(
        {k: torch.rand(args.n, 3, args.size, args.size) for k in ("fg", "bg")},
        torch.randint(0, 6, (args.n,)),
    )

    def naive() -> list[int]:
        correct = [0] * len(EPS)
        for batch in make_loader(data, args.batch):
            x = {"fg": batch["fg"], "bg": batch["bg"]}
            for i, e in enumerate(EPS):
                adv = TorchAttacksAdapter("FGSM", target="fg", eps=e)(model, x, batch["label"])
                with torch.no_grad():
                    correct[i] += int((model(adv).argmax(1) == batch["label"]).sum())
        return correct

    def ours(sanity: bool = True) -> list[dict]:
        return robustness_sweep(
            {"m": model},
            data,
            [Sweep("fgsm", FGSM(targets=("fg",)), EPS)],
            batch_size=args.batch,
            progress=False,
            sanity=sanity,
        )

    same = [r["correct"] for r in ours() if r["perturbation"] == "fgsm"] == naive()
    cases = {"naive": naive, "ours": ours, "unchecked": lambda: ours(sanity=False)}
    times = interleaved_times(cases, args.repeats)
    t = {name: statistics.median(v) for name, v in times.items()}
    fastest = {name: min(v) for name, v in times.items()}
    print(
        f"FGSM sweep over {len(EPS)} eps, {args.n} images of {args.size}px, 2 x small_cnn, "
        f"torch threads {torch.get_num_threads()}, {args.repeats} interleaved repeats"
    )
    print("                                        median    fastest")
    for name, label in (
        ("naive", "naive sweep (attack + score per eps)"),
        ("ours", "modfuse robustness_sweep (+ clean)"),
        ("unchecked", "  the same with sanity=False"),
    ):
        print(f"{label:38s} {t[name]:7.3f} s  {fastest[name]:7.3f} s")
    ratio, ratio_fast = t["naive"] / t["ours"], fastest["naive"] / fastest["ours"]
    print(f"ratio (goal >= 3x)                     {ratio:7.2f}x  {ratio_fast:7.2f}x")
    overhead = 100 * (t["ours"] / t["unchecked"] - 1)
    overhead_fast = 100 * (fastest["ours"] / fastest["unchecked"] - 1)
    print(f"sanity checks' overhead (goal <= 15%)  {overhead:6.1f} %  {overhead_fast:6.1f} %")
    print(f"same accuracies: {same}")


if __name__ == "__main__":
    main()

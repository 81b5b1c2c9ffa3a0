"""PGD-10 on the foreground only: modfuse vs torchattacks through the adapter.

Both attack the same 2-modality model on the same data. torchattacks sees a one-input model,
so it recomputes the background branch at every step; modfuse encodes it once per call.
Also: both modalities targeted, where neither can skip work (modfuse should be no slower).

Run: python benchmarks/attacks.py [--batch 64] [--size 64] [--repeats 5]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import interleaved_medians  # noqa: E402

from modfuse import FusionModel  # noqa: E402
from modfuse.attacks import PGD, TorchAttacksAdapter  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    import torchattacks

    torch.manual_seed(0)
    enc = {"name": "small_cnn", "width": 32, "depth": 3}
    model = FusionModel({"fg": enc, "bg": enc}, "concat", num_classes=10).eval()
    x = {k: torch.rand(args.batch, 3, args.size, args.size) for k in ("fg", "bg")}
    y = torch.randint(0, 10, (args.batch,))
    settings = dict(eps=8 / 255, alpha=2 / 255, steps=10)

    ours = PGD(**settings, random_start=False)
    adapter = TorchAttacksAdapter("PGD", target="fg", **settings, random_start=False)

    # Both modalities: torchattacks takes one tensor, so stack fg and bg into one input.
    class Stacked(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return self.model({"fg": t[:, :3], "bg": t[:, 3:]})

    both = PGD(**settings, random_start=False, targets=("fg", "bg"))
    stacked = torchattacks.PGD(Stacked(), **settings, random_start=False)
    cat = torch.cat([x["fg"], x["bg"]], 1)
    t = interleaved_medians(
        {
            "ours": lambda: ours(model, x, y),
            "ta": lambda: adapter(model, x, y),
            "both": lambda: both(model, x, y),
            "both_ta": lambda: stacked(cat, y),
        },
        args.repeats,
    )
    t_ours, t_ta, t_both, t_both_ta = t["ours"], t["ta"], t["both"], t["both_ta"]

    n = args.batch
    print(
        f"PGD-10, batch {n}, {args.size}px, small_cnn x2, torch threads {torch.get_num_threads()}"
    )
    print(f"{'case':34s} {'modfuse img/s':>14s} {'torchattacks img/s':>19s} {'ratio':>7s}")
    print(
        f"{'fg only (bg untouched)':34s} {n / t_ours:14.1f} {n / t_ta:19.1f} {t_ta / t_ours:7.2f}"
    )
    print(f"{'fg and bg':34s} {n / t_both:14.1f} {n / t_both_ta:19.1f} {t_both_ta / t_both:7.2f}")


if __name__ == "__main__":
    main()

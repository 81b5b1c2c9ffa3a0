"""GaussianBlur vs torchvision's gaussian_blur (batched and per image) and kornia's.

Run: python benchmarks/blur.py [--n 256] [--size 64] [--sigma 2.0]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
import torchvision.transforms.functional as TF

sys.path.insert(0, str(Path(__file__).parent))
from _timing import median_seconds  # noqa: E402

from modfuse.attacks import gaussian_blur  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--sigma", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    import kornia

    torch.manual_seed(0)
    x = torch.rand(args.n, 3, args.size, args.size)
    k = 2 * math.ceil(3 * args.sigma) + 1
    mask = torch.zeros(args.n, 1, args.size, args.size)
    mask[:, :, 16:48, 16:48] = 1
    sigmas = torch.rand(args.n) * 2 * args.sigma

    cases = {
        "modfuse gaussian_blur": lambda: gaussian_blur(x, args.sigma),
        "modfuse, per-sample sigma": lambda: gaussian_blur(x, sigmas),
        "modfuse, masked region": lambda: mask * gaussian_blur(x, args.sigma) + (1 - mask) * x,
        "torchvision batched": lambda: TF.gaussian_blur(x, [k, k], [args.sigma] * 2),
        "torchvision per-image loop": lambda: [
            TF.gaussian_blur(i, [k, k], [args.sigma] * 2) for i in x
        ],
        "kornia gaussian_blur2d": lambda: kornia.filters.gaussian_blur2d(
            x, (k, k), (args.sigma, args.sigma), border_type="reflect"
        ),
    }
    times = {name: median_seconds(fn, args.repeats) for name, fn in cases.items()}
    fastest_other = min(v for n, v in times.items() if not n.startswith("modfuse"))
    print(
        f"{args.n} images of {args.size}px, sigma {args.sigma} (kernel {k}), "
        f"torch threads {torch.get_num_threads()}"
    )
    for name, t in times.items():
        print(f"{name:30s} {t * 1e3:8.1f} ms   speed vs fastest other: {fastest_other / t:5.2f}x")


if __name__ == "__main__":
    main()

"""A picture of the synthetic world (samples with their mask outline and both views) and
the command line of :mod:`modfuse.data.synthetic`.

Run ``python -m modfuse.data.synthetic --preview out.png`` to write one.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Any

from modfuse.data.synthetic.render import SCENES
from modfuse.data.synthetic.world import REFERENCE_DIFFICULTY, make_synthetic_coco


def write_preview(
    path: str | os.PathLike, n: int = 12, size: int = 64, seed: int = 0, **world: Any
) -> None:
    """A PNG grid of ``n`` samples: image with mask outline, the fg view and the bg view.

    Args:
        path: The PNG file to write.
        n: Samples (columns).
        size: Image side in pixels.
        seed: The world's seed.
        **world: Other :func:`modfuse.data.synthetic.make_synthetic_coco` settings
            (``classes``, ``occlusion``, ``clutter``...).

    Examples:
        >>> import tempfile
        >>> write_preview(tempfile.mkdtemp() + "/p.png", n=2, size=32, occlusion=0.3)
    """
    import tempfile

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from modfuse.data.coco.dataset import CocoContext

    with tempfile.TemporaryDirectory() as tmp:
        root = make_synthetic_coco(tmp, n_train=n, n_test=0, size=size, seed=seed, **world)
        data = CocoContext(root / "train2017", root / "annotations" / "instances_train2017.json")
        fig, axes = plt.subplots(3, n, figsize=(1.4 * n, 4.6))
        for i in range(n):
            item = data[i]
            panels = [item["image"], item["fg"], item["bg"]]
            for row, (ax, t) in enumerate(zip(axes[:, i], panels)):
                ax.imshow(t.permute(1, 2, 0).clamp(0, 1).numpy())
                if row == 0:
                    ax.contour(
                        item["mask"][0].numpy(), levels=[0.5], colors="white", linewidths=0.6
                    )
                    ax.set_title(
                        f"{data.classes[item['label']]}\n{SCENES[item['scene']]}", fontsize=8
                    )
                ax.set_xticks([]), ax.set_yticks([])
        for ax, label in zip(axes[:, 0], ["image + mask", "fg view", "bg view"]):
            ax.set_ylabel(label, fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m modfuse.data.synthetic``: write a world (``--root``) and/or a preview."""
    parser = argparse.ArgumentParser(
        prog="python -m modfuse.data.synthetic",
        description="Write or preview the synthetic context world.",
    )
    parser.add_argument("--preview", metavar="PNG", help="write a grid of samples to this file")
    parser.add_argument("--root", help="write a dataset to this folder")
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-test", type=int, default=500)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--contexts", default="distinct", choices=["distinct", "similar"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--reference-difficulty", action="store_true", help="use REFERENCE_DIFFICULTY"
    )
    args = parser.parse_args(argv)
    if not args.preview and not args.root:
        parser.error("give --preview PNG and/or --root DIR")
    knobs = REFERENCE_DIFFICULTY if args.reference_difficulty else {}
    if args.root:
        make_synthetic_coco(
            args.root, args.n_train, args.n_test, args.size, args.contexts, seed=args.seed, **knobs
        )
        print(f"wrote {args.n_train} + {args.n_test} images to {args.root}")
    if args.preview:
        write_preview(args.preview, size=args.size, seed=args.seed, **knobs)
        print(f"wrote {args.preview}")

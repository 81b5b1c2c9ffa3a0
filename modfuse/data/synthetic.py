"""An embedded synthetic context world, written to disk in the real COCO format.

Object classes (distinct silhouettes and textures) are placed on procedural scenes (water,
sky, grass, road, indoor, sand). With ``contexts="distinct"`` each class lives mostly in its
own scene, so the background alone predicts the class; with ``"similar"`` every class appears
in every scene, so it does not. The folder it writes (``train2017/``, ``val2017/``,
``annotations/instances_*2017.json``) is read by :class:`modfuse.data.coco.CocoContext`
exactly like COCO; each image also records its scene label (``scene``), so a background
encoder can be pretrained on scenes the way Places365 is. ``world.json``, written last, records
the settings the folder was written with; :func:`ensure_synthetic_world` reuses a folder only
when they are the ones asked for.

Run ``python -m modfuse.data.synthetic --preview out.png`` to look at samples and their views.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from modfuse.checkpoint import atomic_write_bytes, atomic_write_json

#: Bumped whenever the generator writes other bytes for the same settings.
WORLD_FORMAT = 1
#: The settings file of a finished world, written after every other file.
WORLD_FILE = "world.json"

SCENES = ("water", "sky", "grass", "road", "indoor", "sand")
#: Class name -> (shape, texture). Colours are drawn per object from one shared palette, so a
#: class is told by its silhouette and texture, not its colour: what a blur takes away.
CLASSES: dict[str, tuple[str, str]] = {
    "ball": ("circle", "shaded"),
    "box": ("square", "stripes"),
    "kite": ("triangle", "checker"),
    "star": ("star", "solid"),
    "ring": ("ring", "solid"),
    "cross": ("cross", "dots"),
}
PALETTE = np.array(
    [
        (0.90, 0.15, 0.10),
        (0.55, 0.30, 0.10),
        (0.75, 0.20, 0.80),
        (1.00, 0.85, 0.05),
        (0.05, 0.85, 0.85),
        (0.95, 0.95, 0.95),
        (0.95, 0.50, 0.05),
        (0.20, 0.20, 0.90),
    ]
)
#: Shapes stored as RLE (compressed) instead of polygons: both COCO encodings get exercised.
RLE_SHAPES = {"circle", "ring"}


# --------------------------------------------------------------------------- scenes
def _scene(name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A procedural scene ``(size, size, 3)`` in [0, 1]."""
    y, x = np.mgrid[0:size, 0:size] / size
    noise = rng.normal(0, 1, (size, size))
    if name == "water":
        f, p = rng.uniform(10, 20), rng.uniform(0, 2 * math.pi)
        w = 0.5 + 0.5 * np.sin(f * y * 2 * math.pi / 3 + p + 0.8 * np.sin(6 * x))
        img = np.stack([0.05 + 0.1 * w, 0.25 + 0.2 * w, 0.55 + 0.3 * w], -1)
    elif name == "sky":
        img = np.stack([0.45 + 0.4 * y, 0.65 + 0.3 * y, 0.95 + 0.0 * y], -1)
        for _ in range(rng.integers(1, 4)):
            cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 0.7), rng.uniform(0.1, 0.25)
            cloud = np.exp(-(((x - cx) ** 2 + 0.5 * (y - cy) ** 2) / r**2) * 3)[..., None]
            img = img * (1 - 0.8 * cloud) + 0.98 * 0.8 * cloud
    elif name == "grass":
        blades = np.sin(x * size * rng.uniform(1.5, 2.5) + 3 * noise.cumsum(0) / size)
        g = 0.45 + 0.1 * blades + 0.08 * noise
        img = np.stack([0.15 + 0.05 * noise, g, 0.1 + 0.03 * noise], -1)
    elif name == "road":
        img = np.repeat((0.35 + 0.05 * noise)[..., None], 3, -1)
        lane = np.abs(x - rng.uniform(0.3, 0.7)) < 0.03
        dashes = (np.floor(y * 6 + rng.uniform(0, 1)) % 2) == 0
        img[lane & dashes] = (0.95, 0.85, 0.2)
    elif name == "indoor":
        horizon = rng.uniform(0.55, 0.75)
        wall = np.array([0.85, 0.78, 0.62]) + 0.02 * noise[..., None]
        floor = np.array([0.45, 0.28, 0.15]) + 0.05 * noise[..., None] * np.sin(40 * x)[..., None]
        img = np.where((y < horizon)[..., None], wall, floor)
        wx, wy = rng.uniform(0.1, 0.6), rng.uniform(0.1, 0.3)
        window = (x > wx) & (x < wx + 0.3) & (y > wy) & (y < wy + 0.2)
        img[window] = (0.6, 0.8, 0.95)
    elif name == "sand":
        p = rng.uniform(0, 2 * math.pi)
        dunes = 0.5 + 0.5 * np.sin((x + 2 * y) * rng.uniform(4, 8) + p)
        img = np.stack([0.85 + 0.08 * dunes, 0.72 + 0.08 * dunes, 0.45 + 0.05 * dunes], -1)
        img = img + 0.03 * noise[..., None]
    else:
        raise KeyError(f"unknown scene {name!r}; scenes: {list(SCENES)}")
    return np.clip(img, 0, 1)


# --------------------------------------------------------------------------- objects
def _polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[float]:
    """Vertices ``[x1, y1, x2, y2, ...]`` of a polygonal shape."""
    if shape == "square":
        pts = [(math.cos(a), math.sin(a)) for a in np.arange(4) * math.pi / 2 + math.pi / 4]
        pts = [(px * 0.95, py * 0.95) for px, py in pts]
    elif shape == "triangle":
        pts = [(math.cos(a), math.sin(a)) for a in np.arange(3) * 2 * math.pi / 3 - math.pi / 2]
    elif shape == "star":
        pts = [
            (
                (1.0 if i % 2 == 0 else 0.45) * math.cos(a),
                (1.0 if i % 2 == 0 else 0.45) * math.sin(a),
            )
            for i, a in enumerate(np.arange(10) * math.pi / 5 - math.pi / 2)
        ]
    elif shape == "cross":
        t = 0.33
        pts = [
            (-t, -1),
            (t, -1),
            (t, -t),
            (1, -t),
            (1, t),
            (t, t),
            (t, 1),
            (-t, 1),
            (-t, t),
            (-1, t),
            (-1, -t),
            (-t, -t),
        ]
    else:
        raise KeyError(f"{shape!r} is not a polygon shape")
    ca, sa = math.cos(angle), math.sin(angle)
    out: list[float] = []
    for px, py in pts:
        out += [cx + r * (ca * px - sa * py), cy + r * (sa * px + ca * py)]
    return [round(v, 2) for v in out]


def _round_mask(shape: str, cx: float, cy: float, r: float, size: int) -> np.ndarray:
    """Binary mask of a circle or a ring, sampled at pixel centres."""
    y, x = np.mgrid[0:size, 0:size] + 0.5
    d = np.sqrt((x - cx) ** 2 + (y - cy) ** 2)
    return (d <= r) if shape == "circle" else ((d <= r) & (d >= 0.55 * r))


def _texture(kind: str, colour: np.ndarray, size: int, rng: np.random.Generator, cx, cy, r):
    y, x = np.mgrid[0:size, 0:size] + 0.5
    base = np.broadcast_to(colour, (size, size, 3)).copy()
    if kind == "shaded":
        d = np.sqrt((x - cx + 0.3 * r) ** 2 + (y - cy + 0.3 * r) ** 2) / (1.6 * r)
        base *= np.clip(1.15 - d, 0.35, 1.1)[..., None]
    elif kind == "stripes":
        period = max(2.0, r / 3)
        base *= np.where((y // period) % 2 == 0, 1.0, 0.55)[..., None]
    elif kind == "checker":
        cell = max(2.0, r / 3)
        check = ((x // cell) + (y // cell)) % 2 == 0
        base = np.where(check[..., None], base, np.array([0.2, 0.05, 0.3]))
    elif kind == "dots":
        period = max(3.0, r / 2.5)
        dots = ((x % period) - period / 2) ** 2 + ((y % period) - period / 2) ** 2 < (
            period / 4
        ) ** 2
        base = np.where(dots[..., None], np.array([0.1, 0.6, 0.1]), base)
    jitter = rng.uniform(0.9, 1.1, size=3)
    return np.clip(base * jitter + rng.normal(0, 0.02, (size, size, 3)), 0, 1)


# --------------------------------------------------------------------------- the world
def _scene_sampler(
    contexts: str | Mapping[str, Sequence[str]], classes: Sequence[str], purity: float | None
):
    """Return ``sample(class_index, rng) -> scene_index`` for a context setting."""
    n_scenes = len(SCENES)
    if isinstance(contexts, Mapping):
        unknown = [s for v in contexts.values() for s in v if s not in SCENES]
        missing = [c for c in classes if c not in contexts]
        if unknown or missing:
            raise ValueError(
                f"contexts mapping: unknown scenes {unknown} (known {list(SCENES)}), "
                f"classes without scenes {missing}"
            )
        table = [[SCENES.index(s) for s in contexts[c]] for c in classes]
        return lambda c, rng: int(rng.choice(table[c]))
    if contexts == "similar":
        return lambda c, rng: int(rng.integers(n_scenes))
    if contexts != "distinct":
        raise ValueError(f"contexts must be 'distinct', 'similar' or a mapping, got {contexts!r}")
    p = 0.9 if purity is None else purity
    if not 0 <= p <= 1:
        raise ValueError(f"context_purity must be in [0, 1], got {p}")

    def sample(c: int, rng: np.random.Generator) -> int:
        home = c % n_scenes
        if rng.random() < p:
            return home
        return int(rng.choice([s for s in range(n_scenes) if s != home]))

    return sample


def render_sample(
    class_index: int, scene_index: int, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, dict]:
    """One image ``(size, size, 3)`` uint8 and its annotation's segmentation, bbox and area."""
    name = list(CLASSES)[class_index]
    shape, texture = CLASSES[name]
    colour = PALETTE[rng.integers(len(PALETTE))]
    img = _scene(SCENES[scene_index], size, rng)
    r = rng.uniform(0.2, 0.3) * size
    cx, cy = rng.uniform(r + 1, size - r - 1), rng.uniform(r + 1, size - r - 1)
    if shape in RLE_SHAPES:
        mask = _round_mask(shape, cx, cy, r, size)
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        segmentation: object = {"size": [size, size], "counts": rle["counts"].decode("ascii")}
    else:
        poly = _polygon(shape, cx, cy, r, rng.uniform(0, 2 * math.pi))
        # Paint exactly the pixels that pycocotools will decode from the stored polygon.
        rle = mask_utils.merge(mask_utils.frPyObjects([poly], size, size))
        mask = mask_utils.decode(rle).astype(bool)
        segmentation = [poly]
    obj = _texture(texture, colour, size, rng, cx, cy, r)
    img = np.where(mask[..., None], obj, img)
    x0, y0, w, h = (float(v) for v in mask_utils.toBbox(rle))
    ann = {"segmentation": segmentation, "bbox": [x0, y0, w, h], "area": float(mask.sum())}
    return (img * 255).round().astype(np.uint8), ann


def _write_split(root: Path, split: str, n: int, size: int, seed: int, sample_scene) -> None:
    classes = list(CLASSES)
    image_dir = root / f"{split}2017"
    image_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    split_seed = {"train": 0, "val": 1}[split]
    for i in range(n):
        rng = np.random.default_rng([seed, split_seed, i])
        c = i % len(classes)  # balanced classes
        s = sample_scene(c, rng)
        pixels, ann = render_sample(c, s, size, rng)
        image_id = i + 1
        file_name = f"{image_id:012d}.jpg"
        Image.fromarray(pixels).save(image_dir / file_name, format="JPEG", quality=95)
        images.append(
            {
                "id": image_id,
                "file_name": file_name,
                "width": size,
                "height": size,
                "scene": s,
                "scene_name": SCENES[s],
            }
        )
        annotations.append(
            {"id": image_id, "image_id": image_id, "category_id": c + 1, "iscrowd": 0, **ann}
        )
    coco = {
        "info": {"description": f"modfuse synthetic context world ({split})", "version": "1"},
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": i + 1, "name": name, "supercategory": "object"} for i, name in enumerate(classes)
        ],
        "scenes": list(SCENES),
    }
    data = json.dumps(coco, sort_keys=True, separators=(",", ":")).encode()
    atomic_write_bytes(root / "annotations" / f"instances_{split}2017.json", data)


def make_synthetic_coco(
    root: str | os.PathLike,
    n_train: int = 2000,
    n_test: int = 500,
    size: int = 64,
    contexts: str | Mapping[str, Sequence[str]] = "distinct",
    context_purity: float | None = None,
    seed: int = 0,
) -> Path:
    """Write a synthetic COCO-format context world to ``root`` and return ``root``.

    Args:
        root: Output folder; gets ``train2017/``, ``val2017/`` and ``annotations/``.
        n_train: Training images (classes balanced, one object per image).
        n_test: Test images, written as the ``val2017`` split.
        size: Image side in pixels.
        contexts: ``"distinct"`` (each class in its own scene), ``"similar"`` (every class
            in every scene, uniformly), or a mapping ``{class name: [scene names]}``.
        context_purity: With ``"distinct"``: probability that an object is in its own scene
            (else a uniformly drawn other scene); default 0.9.
        seed: The same seed writes the same bytes.

    ``world.json`` (the settings, see :func:`world_settings`) is written last and atomically,
    so a generation that was killed leaves a folder without it, never one that looks finished.

    Examples:
        >>> import tempfile
        >>> root = make_synthetic_coco(tempfile.mkdtemp(), n_train=12, n_test=6, size=32)
        >>> sorted(p.name for p in root.iterdir())
        ['annotations', 'train2017', 'val2017', 'world.json']
    """
    if n_train < 0 or n_test < 0 or size < 16:
        raise ValueError(
            f"need n_train, n_test >= 0 and size >= 16, got {n_train}, {n_test}, {size}"
        )
    root = Path(root)
    sample_scene = _scene_sampler(contexts, list(CLASSES), context_purity)
    settings = world_settings(n_train, n_test, size, contexts, context_purity, seed)
    # An older world.json must not vouch for the half-written files if this run is killed.
    (root / WORLD_FILE).unlink(missing_ok=True)
    _write_split(root, "train", n_train, size, seed, sample_scene)
    _write_split(root, "val", n_test, size, seed, sample_scene)
    atomic_write_json(root / WORLD_FILE, settings)
    return root


def world_settings(
    n_train: int = 2000,
    n_test: int = 500,
    size: int = 64,
    contexts: str | Mapping[str, Sequence[str]] = "distinct",
    context_purity: float | None = None,
    seed: int = 0,
) -> dict[str, object]:
    """The settings that decide a world's bytes, as ``world.json`` records them.

    ``context_purity`` is stored as the value used: 0.9 when None with ``"distinct"``, None
    with ``"similar"`` or a mapping (where it is ignored), so equal worlds compare equal.

    Examples:
        >>> world_settings(n_train=10, contexts="similar", context_purity=0.5)["context_purity"]
        >>> world_settings()["context_purity"], world_settings()["world_format"]
        (0.9, 1)
    """
    if isinstance(contexts, Mapping):
        ctx: object = {str(k): [str(s) for s in v] for k, v in sorted(contexts.items())}
    else:
        ctx = contexts
    purity = (0.9 if context_purity is None else context_purity) if contexts == "distinct" else None
    settings = {
        "world_format": WORLD_FORMAT,
        "n_train": n_train,
        "n_test": n_test,
        "size": size,
        "contexts": ctx,
        "context_purity": purity,
        "seed": seed,
    }
    return json.loads(json.dumps(settings))  # as read back from the file: lists, floats


def ensure_synthetic_world(
    root: str | os.PathLike,
    n_train: int = 2000,
    n_test: int = 500,
    size: int = 64,
    contexts: str | Mapping[str, Sequence[str]] = "distinct",
    context_purity: float | None = None,
    seed: int = 0,
) -> Path:
    """The synthetic world with these settings at ``root``: written if absent, else checked.

    An absent or empty ``root`` gets a new world (:func:`make_synthetic_coco`). A world whose
    ``world.json`` records exactly these settings is reused and nothing is written. Anything
    else is an error, never a silent reuse of files written with other settings: a world with
    other settings (the message lists each one that differs), or a folder that holds files
    but no ``world.json`` (a world from before ``world.json`` existed, an interrupted one, or
    something else).

    Args:
        root: The world's folder.
        n_train, n_test, size, contexts, context_purity, seed: As for
            :func:`make_synthetic_coco`.

    Returns:
        ``root`` as a Path.

    Raises:
        ValueError: ``root`` holds a world with other settings, or files without
            ``world.json``.

    Examples:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp()) / "world"
        >>> ensure_synthetic_world(root, n_train=12, n_test=6, size=32) == root  # writes
        True
        >>> ensure_synthetic_world(root, n_train=12, n_test=6, size=32) == root  # reuses
        True
        >>> ensure_synthetic_world(root, n_train=24, n_test=6, size=32)
        Traceback (most recent call last):
        ...
        ValueError: ...n_train: folder has 12, config asks 24...
    """
    root = Path(root)
    args = (n_train, n_test, size, contexts, context_purity, seed)
    wanted = world_settings(*args)
    advice = "delete the folder to write it anew, or choose another root"
    if root.exists() and not root.is_dir():
        raise ValueError(f"{root} is a file, not a folder for the synthetic world; {advice}")
    if not root.exists() or not any(root.iterdir()):
        return make_synthetic_coco(root, *args)
    record = root / WORLD_FILE
    if not record.is_file():
        found = sorted(p.name for p in root.iterdir())[:6]
        raise ValueError(
            f"{root} is not empty (it holds {found}) but has no {WORLD_FILE}: an older or "
            "interrupted synthetic world, or other files, so the settings it was written with "
            f"are unknown and may differ from {wanted}; {advice}"
        )
    try:
        have = json.loads(record.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{record} is not valid JSON: {err}; {advice}") from err
    if not isinstance(have, dict):
        raise ValueError(f"{record} should hold a JSON object of settings, got {have!r}; {advice}")
    diffs = [
        f"{k}: folder has {have.get(k, '(not recorded)')}, config asks {wanted.get(k, '(none)')}"
        for k in sorted(set(wanted) | set(have))
        if have.get(k) != wanted.get(k) or (k in have) != (k in wanted)
    ]
    if diffs:
        raise ValueError(
            f"the synthetic world in {root} was written with other settings: "
            f"{'; '.join(diffs)}; {advice}"
        )
    return root


def write_preview(path: str | os.PathLike, n: int = 12, size: int = 64, seed: int = 0) -> None:
    """A PNG grid of ``n`` samples: image with mask outline, the fg view and the bg view."""
    import tempfile

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from modfuse.data.coco import CocoContext

    with tempfile.TemporaryDirectory() as tmp:
        root = make_synthetic_coco(tmp, n_train=n, n_test=0, size=size, seed=seed)
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
    parser = argparse.ArgumentParser(description="Write or preview the synthetic context world.")
    parser.add_argument("--preview", metavar="PNG", help="write a grid of samples to this file")
    parser.add_argument("--root", help="write a dataset to this folder")
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-test", type=int, default=500)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--contexts", default="distinct", choices=["distinct", "similar"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.preview and not args.root:
        parser.error("give --preview PNG and/or --root DIR")
    if args.root:
        make_synthetic_coco(
            args.root, args.n_train, args.n_test, args.size, args.contexts, seed=args.seed
        )
        print(f"wrote {args.n_train} + {args.n_test} images to {args.root}")
    if args.preview:
        write_preview(args.preview, size=args.size, seed=args.seed)
        print(f"wrote {args.preview}")


if __name__ == "__main__":
    main()

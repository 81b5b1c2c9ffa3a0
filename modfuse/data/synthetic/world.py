"""Writing the synthetic context world: its splits, ``world.json``, and reuse of a folder.

Split out of :mod:`modfuse.data.synthetic` (which re-exports every name here, and is the
module to import and to run with ``python -m``), so that the preview and the command line in
:mod:`modfuse.data.synthetic.preview` can write a world without importing the module that
imports them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from modfuse.data.synthetic.render import SCENES, Difficulty, render_sample
from modfuse.data.synthetic.settings import (
    OPTIONAL_DEFAULTS,
    check_classes,
    scene_sampler,
    world_settings,
)
from modfuse.data.synthetic.shapes import CATALOGUE, CLASSES
from modfuse.io.folder_lock import claim_folder
from modfuse.io.tensor_files import atomic_write_bytes, atomic_write_json

__all__ = ["REFERENCE_DIFFICULTY", "WORLD_FILE", "ensure_synthetic_world", "make_synthetic_coco"]

#: The settings file of a finished world, written after every other file.
WORLD_FILE = "world.json"
#: The difficulty of the reference example's worlds (``make_synthetic_coco(...,
#: **REFERENCE_DIFFICULTY)``, its pretraining world with ``classes=PRETRAIN_CLASSES``), chosen
#: so that a linear head on frozen foreground features pretrained on the other six classes is
#: right about 9 times in 10, not always. Measured with the example's pipeline at 48 px, seed 0
#: (issue 13, CPU): foreground-only clean accuracy 0.94 (distinct) / 0.91 (similar) with its
#: full settings, 0.90 / 0.86 with ``--quick``; without the knobs (disjoint classes only), 0.93
#: on the quick similar world (1.00 in issue 13 for the original world and classes).
REFERENCE_DIFFICULTY: dict[str, Any] = {
    "scale": (0.15, 0.28),
    "aspect": 0.25,
    "occlusion": 0.3,
    "clutter": 2,
    "noise": 0.04,
}


def _write_split(
    root: Path,
    split: str,
    n: int,
    size: int,
    seed: int,
    sample_scene,
    classes: Sequence[str] = tuple(CLASSES),
    difficulty: Difficulty | None = None,
) -> None:
    image_dir = root / f"{split}2017"
    image_dir.mkdir(parents=True, exist_ok=True)
    # Clutter comes from the classes this world does not annotate, so it tells nothing of
    # the object's class (a distractor of any class but the object's own would).
    distractors = [c for c in CATALOGUE if c not in classes]
    images, annotations = [], []
    split_seed = {"train": 0, "val": 1}[split]
    for i in range(n):
        rng = np.random.default_rng([seed, split_seed, i])
        c = i % len(classes)  # balanced classes
        s = sample_scene(c, rng)
        pixels, ann = render_sample(classes[c], s, size, rng, difficulty, distractors)
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
    *,
    classes: Sequence[str] | None = None,
    scale: tuple[float, float] = (0.2, 0.3),
    aspect: float = 0.0,
    occlusion: float = 0.0,
    clutter: int = 0,
    noise: float = 0.0,
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
        classes: Class names from :data:`CATALOGUE`, category ids 1.. in this order; None:
            :data:`CLASSES`. With ``"distinct"`` the i-th class lives in scene ``i % 6``.
        scale: Range of the object's radius as a fraction of ``size``.
        aspect: Aspect jitter: the object's axes stretched by ``e^a`` and ``e^-a``, ``a``
            uniform in ``[-aspect, aspect]``.
        occlusion: Largest fraction of the object's pixels hidden by a bar in front of it
            (each object's fraction uniform in ``[0, occlusion]``). The annotation is of the
            visible pixels, as in COCO: an occluded object's mask, bbox and area lose the
            hidden part, and its segmentation is stored as RLE.
        clutter: Distractor objects behind the object, drawn from the catalogue classes not
            in ``classes`` (so they tell nothing of the object's class), not annotated.
        noise: Standard deviation of Gaussian pixel noise over the whole image ([0, 1] units).

    The difficulty knobs at their defaults write the same bytes as before they existed.
    ``world.json`` (the settings, see :func:`world_settings`) is written last and atomically,
    so a generation that was killed leaves a folder without it, never one that looks finished.

    Examples:
        >>> import tempfile
        >>> root = make_synthetic_coco(tempfile.mkdtemp(), n_train=12, n_test=6, size=32)
        >>> sorted(p.name for p in root.iterdir())
        ['annotations', 'train2017', 'val2017', 'world.json']
        >>> from modfuse.data.synthetic.shapes import PRETRAIN_CLASSES
        >>> hard = make_synthetic_coco(
        ...     tempfile.mkdtemp(), 12, 0, 32, classes=PRETRAIN_CLASSES, **REFERENCE_DIFFICULTY
        ... )
    """
    if n_train < 0 or n_test < 0 or size < 16:
        raise ValueError(
            f"need n_train, n_test >= 0 and size >= 16, got {n_train}, {n_test}, {size}"
        )
    root = Path(root)
    names = check_classes(classes)
    difficulty = Difficulty(scale, aspect, occlusion, clutter, noise)
    if clutter and len(names) == len(CATALOGUE):
        raise ValueError(
            f"clutter={clutter} draws distractors from the catalogue classes not in the world, "
            f"but the world uses all {len(CATALOGUE)}; use fewer classes or clutter=0"
        )
    sample_scene = scene_sampler(contexts, names, context_purity)
    settings = world_settings(
        n_train,
        n_test,
        size,
        contexts,
        context_purity,
        seed,
        classes=names,
        scale=scale,
        aspect=aspect,
        occlusion=occlusion,
        clutter=clutter,
        noise=noise,
    )
    # An older world.json must not vouch for the half-written files if this run is killed.
    (root / WORLD_FILE).unlink(missing_ok=True)
    _write_split(root, "train", n_train, size, seed, sample_scene, names, difficulty)
    _write_split(root, "val", n_test, size, seed, sample_scene, names, difficulty)
    atomic_write_json(root / WORLD_FILE, settings)
    return root


def ensure_synthetic_world(
    root: str | os.PathLike,
    n_train: int = 2000,
    n_test: int = 500,
    size: int = 64,
    contexts: str | Mapping[str, Sequence[str]] = "distinct",
    context_purity: float | None = None,
    seed: int = 0,
    **knobs: Any,
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
        **knobs: Its keyword-only settings: ``classes``, ``scale``, ``aspect``,
            ``occlusion``, ``clutter``, ``noise``.

    A world being written by another process (two runs started together) is waited for,
    then reused (:func:`modfuse.io.folder_lock.claim_folder`).

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
    if (root / WORLD_FILE).is_file():
        return _reuse_or_write(root, args, knobs)  # written already: only read
    # Two processes asking for a new world at once: one writes it, the other waits for it
    # and then reuses it (without the claim, it found a half-written folder).
    with claim_folder(root, "a synthetic world being written", wait=True):
        return _reuse_or_write(root, args, knobs)


def _reuse_or_write(root: Path, args: tuple, knobs: Mapping[str, Any]) -> Path:
    """The body of :func:`ensure_synthetic_world`."""
    wanted = world_settings(*args, **knobs)
    advice = "delete the folder to write it anew, or choose another root"
    if root.exists() and not root.is_dir():
        raise ValueError(f"{root} is a file, not a folder for the synthetic world; {advice}")
    if not root.exists() or not any(root.iterdir()):
        return make_synthetic_coco(root, *args, **knobs)
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
    # A setting left out of world.json is its default (see OPTIONAL_DEFAULTS).
    diffs = [
        f"{k}: folder has {have.get(k, OPTIONAL_DEFAULTS.get(k, '(not recorded)'))}, "
        f"config asks {wanted.get(k, OPTIONAL_DEFAULTS.get(k, '(none)'))}"
        for k in sorted(set(wanted) | set(have))
        if have.get(k) != wanted.get(k) or (k in have) != (k in wanted)
    ]
    if diffs:
        raise ValueError(
            f"the synthetic world in {root} was written with other settings: "
            f"{'; '.join(diffs)}; {advice}"
        )
    return root

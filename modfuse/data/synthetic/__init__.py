"""An embedded synthetic context world, written to disk in the real COCO format.

Object classes (distinct silhouettes and textures) are placed on procedural scenes (water,
sky, grass, road, indoor, sand). With ``contexts="distinct"`` each class lives mostly in its
own scene, so the background alone predicts the class; with ``"similar"`` every class appears
in every scene, so it does not. The folder it writes (``train2017/``, ``val2017/``,
``annotations/instances_*2017.json``) is read by :class:`modfuse.data.coco.dataset.CocoContext`
exactly like COCO; each image also records its scene label (``scene``), so a background
encoder can be pretrained on scenes the way Places365 is. ``world.json``, written last, records
the settings the folder was written with; :func:`ensure_synthetic_world` reuses a folder only
when they are the ones asked for.

The catalogue holds 12 classes: a world uses the default six (:data:`CLASSES`) or any others
(``classes=``), e.g. :data:`PRETRAIN_CLASSES` for a pretraining world with other classes than
the evaluation world, as ImageNet's are not COCO's. The difficulty knobs (object scale, aspect
jitter, occlusion, clutter, pixel noise) are off by default; :data:`REFERENCE_DIFFICULTY` is
what the reference example uses. Drawing lives in :mod:`modfuse.data.synthetic.render` and
:mod:`modfuse.data.synthetic.shapes`, settings in :mod:`modfuse.data.synthetic.settings`.

Run ``python -m modfuse.data.synthetic --preview out.png`` to look at samples and their views
(:mod:`modfuse.data.synthetic.preview`, imported only by that command).
"""

from __future__ import annotations

from modfuse.data.synthetic.render import SCENES, Difficulty, render_sample
from modfuse.data.synthetic.settings import WORLD_FORMAT, world_settings
from modfuse.data.synthetic.shapes import CATALOGUE, CLASSES, PALETTE, PRETRAIN_CLASSES, RLE_SHAPES
from modfuse.data.synthetic.world import (
    REFERENCE_DIFFICULTY,
    WORLD_FILE,
    ensure_synthetic_world,
    make_synthetic_coco,
)

__all__ = [
    "CATALOGUE",
    "CLASSES",
    "PALETTE",
    "PRETRAIN_CLASSES",
    "REFERENCE_DIFFICULTY",
    "RLE_SHAPES",
    "SCENES",
    "WORLD_FILE",
    "WORLD_FORMAT",
    "Difficulty",
    "ensure_synthetic_world",
    "make_synthetic_coco",
    "render_sample",
    "world_settings",
]


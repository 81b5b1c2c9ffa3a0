"""The settings of a synthetic world: checking them, recording them (``world.json``), and the
scene each object is drawn in."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import numpy as np

from modfuse.data.synthetic.render import SCENES, Difficulty
from modfuse.data.synthetic.shapes import CATALOGUE, CLASSES

#: Bumped whenever the generator writes other bytes for the same settings.
WORLD_FORMAT = 1
#: Settings that ``world.json`` records only where they differ from these defaults: worlds
#: written before they existed used exactly these values (and the defaults still write the
#: same bytes), so such worlds stay valid and equal worlds compare equal.
OPTIONAL_DEFAULTS: dict[str, object] = {
    "classes": list(CLASSES),
    "scale": list(Difficulty().scale),
    "aspect": Difficulty().aspect,
    "occlusion": Difficulty().occlusion,
    "clutter": Difficulty().clutter,
    "noise": Difficulty().noise,
}


def check_classes(classes: Sequence[str] | None) -> list[str]:
    """The world's class names: ``classes`` checked against the catalogue, or the default six.

    Examples:
        >>> check_classes(None) == list(CLASSES)
        True
        >>> check_classes(["moon", "egg"])
        ['moon', 'egg']
    """
    if classes is None:
        return list(CLASSES)
    if isinstance(classes, str) or not isinstance(classes, Sequence):
        raise ValueError(f"classes must be a sequence of class names, got {classes!r}")
    names = list(classes)
    unknown = [c for c in names if c not in CATALOGUE]
    if not names or unknown or len(set(names)) != len(names):
        raise ValueError(
            f"classes must be distinct names from the catalogue {list(CATALOGUE)}, got {names}"
            + (f" (unknown: {unknown})" if unknown else "")
        )
    return names


def scene_sampler(
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


def world_settings(
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
) -> dict[str, object]:
    """The settings that decide a world's bytes, as ``world.json`` records them.

    ``context_purity`` is stored as the value used: 0.9 when None with ``"distinct"``, None
    with ``"similar"`` or a mapping (where it is ignored), so equal worlds compare equal.
    ``classes`` and the difficulty knobs are stored only where they differ from
    :data:`OPTIONAL_DEFAULTS` (see there why).

    Examples:
        >>> world_settings(n_train=10, contexts="similar", context_purity=0.5)["context_purity"]
        >>> world_settings()["context_purity"], world_settings()["world_format"]
        (0.9, 1)
        >>> world_settings(occlusion=0.3)["occlusion"], "clutter" in world_settings(occlusion=0.3)
        (0.3, False)
    """
    if isinstance(contexts, Mapping):
        ctx: object = {str(k): [str(s) for s in v] for k, v in sorted(contexts.items())}
    else:
        ctx = contexts
    purity = (0.9 if context_purity is None else context_purity) if contexts == "distinct" else None
    settings: dict[str, object] = {
        "world_format": WORLD_FORMAT,
        "n_train": n_train,
        "n_test": n_test,
        "size": size,
        "contexts": ctx,
        "context_purity": purity,
        "seed": seed,
    }
    d = Difficulty(scale, aspect, occlusion, clutter, noise)  # checks the values
    optional = {
        "classes": check_classes(classes),
        "scale": list(d.scale),
        "aspect": float(d.aspect),
        "occlusion": float(d.occlusion),
        "clutter": d.clutter,
        "noise": float(d.noise),
    }
    settings.update({k: v for k, v in optional.items() if v != OPTIONAL_DEFAULTS[k]})
    return json.loads(json.dumps(settings))  # as read back from the file: lists, floats

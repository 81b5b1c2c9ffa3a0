"""Reading a COCO instances file, checked, and the digest of the image files a dataset uses.

pycocotools indexes whatever JSON it is given: ``images`` written as a dict is iterated by its
keys, a ``null`` annotation or one without ``image_id`` fails with a bare ``TypeError`` /
``KeyError`` that names neither the file nor the entry, an ``area`` of ``"big"`` fails later
in a comparison, and a ``file_name`` of ``../x.jpg`` or ``/etc/x.jpg`` is read from outside the
image folder. :func:`load_coco` checks the structure first and raises a ``ValueError`` naming
the file, the entry, the field, what was expected and what came. Segmentations are not checked
here: a bad one is a counted skip (:func:`modfuse.data.coco.checks.segmentation_problem`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import re
from collections.abc import Iterable
from pathlib import Path, PureWindowsPath
from typing import Any

from modfuse.data.coco.checks import check_unique_ids

__all__ = ["check_file_name", "check_structure", "image_files_digest", "load_coco"]

#: The lists a COCO instances file must hold.
SECTIONS = {"images": "image", "annotations": "annotation", "categories": "category"}


def load_coco(ann_file: str | os.PathLike) -> Any:
    """A ``pycocotools.coco.COCO`` of an instances file, after :func:`check_structure`.

    Args:
        ann_file: The instances JSON, e.g. ``coco/annotations/instances_val2017.json``.

    Raises:
        ValueError: The file is not JSON, or its structure is not COCO's (see
            :func:`check_structure`), or two images (two annotations) share an id.

    Examples:
        >>> import tempfile
        >>> f = Path(tempfile.mkdtemp()) / "instances.json"
        >>> image = {"id": 1, "file_name": "a.jpg", "height": 4, "width": 4}
        >>> _ = f.write_text(json.dumps({"images": [image], "annotations": [None],
        ...                              "categories": []}))
        >>> load_coco(f)
        Traceback (most recent call last):
        ...
        ValueError: /.../instances.json: annotations[0] must be an annotation object, got null
    """
    from pycocotools.coco import COCO

    ann_file = Path(ann_file)
    try:
        dataset = json.loads(ann_file.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{ann_file} is not valid JSON: {err}") from err
    check_structure(dataset, ann_file)
    check_unique_ids(dataset, ann_file)
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()
    return coco


def check_structure(dataset: Any, ann_file: str | os.PathLike) -> None:
    """Raise a ValueError naming file, entry and field where ``dataset`` is not COCO's layout.

    Checked: a JSON object with the lists ``images``, ``annotations`` and ``categories`` of
    objects; every ``id``, an annotation's ``image_id`` and ``category_id`` present and integers;
    an annotation's ``area`` (when present) a finite number >= 0 and ``iscrowd`` 0 or 1; a
    category's ``name`` a string; an image's ``file_name`` (:func:`check_file_name`).

    Examples:
        >>> check_structure({"images": [], "annotations": [], "categories": []}, "a.json")
        >>> check_structure({"images": {}, "annotations": [], "categories": []}, "a.json")
        Traceback (most recent call last):
        ...
        ValueError: a.json: field 'images' must be a list of image objects, got a dict
    """
    if not isinstance(dataset, dict):
        raise ValueError(
            f"{ann_file}: expected a JSON object with 'images', 'annotations' and "
            f"'categories', got {_what(dataset)}"
        )
    for key, what in SECTIONS.items():
        if key not in dataset:
            raise ValueError(
                f"{ann_file}: field '{key}' missing; expected a list of {what} objects"
            )
        entries = dataset[key]
        if not isinstance(entries, list):
            raise ValueError(
                f"{ann_file}: field '{key}' must be a list of {what} objects, got {_what(entries)}"
            )
        article = "an" if what[0] in "aeiou" else "a"
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise ValueError(
                    f"{ann_file}: {key}[{i}] must be {article} {what} object, got {_what(entry)}"
                )
            _need_int(entry, "id", f"{ann_file}: {key}[{i}]")
    for i, ann in enumerate(dataset["annotations"]):
        where = f"{ann_file}: annotations[{i}] (id {ann['id']})"
        _need_int(ann, "image_id", where)
        _need_int(ann, "category_id", where)
        area = ann.get("area", 0)
        if not (_is_real(area) and math.isfinite(area) and area >= 0):
            raise ValueError(
                f"{where} field 'area': expected a finite number >= 0 (pixels), got {_what(area)}"
            )
        crowd = ann.get("iscrowd", 0)
        if type(crowd) not in (int, bool) or crowd not in (0, 1):
            raise ValueError(f"{where} field 'iscrowd': expected 0 or 1, got {_what(crowd)}")
    for i, cat in enumerate(dataset["categories"]):
        if not isinstance(cat.get("name"), str):
            raise ValueError(
                f"{ann_file}: categories[{i}] (id {cat['id']}) field 'name': expected a "
                f"string, got {_what(cat.get('name'))}"
            )
    for img in dataset["images"]:
        check_file_name(img.get("file_name"), img["id"], ann_file)


def check_file_name(file_name: Any, image_id: int, ann_file: str | os.PathLike) -> None:
    """Raise unless ``file_name`` is a path relative to the image folder that stays inside it.

    An absolute path (``/x.jpg``, ``C:\\x.jpg``) or one with a ``..`` part (``../x.jpg``) would
    read a file outside the image folder: refused, whichever separator it uses.

    Examples:
        >>> check_file_name("000000000139.jpg", 139, "a.json")
        >>> check_file_name("../x.jpg", 7, "a.json")
        Traceback (most recent call last):
        ...
        ValueError: a.json: image id 7 has file_name '../x.jpg'; expected a path relative to ...
    """
    where = f"{ann_file}: image id {image_id}"
    if not isinstance(file_name, str) or not file_name.strip():
        raise ValueError(
            f"{where} field 'file_name': expected a non-empty string, got {_what(file_name)}"
        )
    parts = re.split(r"[\\/]", file_name)
    if file_name[0] in "/\\" or PureWindowsPath(file_name).drive or ".." in parts:
        raise ValueError(
            f"{where} has file_name {file_name!r}; expected a path relative to the image "
            "folder that stays inside it (not absolute, no '..')"
        )


def image_files_digest(paths: Iterable[Path], contents: bool = False) -> str:
    """A hash of image files' names, sizes and modification times (and bytes, if ``contents``).

    Size and ``st_mtime_ns`` find a rewritten file without reading it; a rewrite of the same
    size within the file system's timestamp resolution (or one whose mtime was set back) is
    found only with ``contents=True``, which reads every file. A missing file hashes as
    missing (reading it later names it).

    Args:
        paths: The image files, in a fixed order.
        contents: Hash each file's bytes too.

    Examples:
        >>> import tempfile
        >>> f = Path(tempfile.mkdtemp()) / "a.jpg"
        >>> _ = f.write_bytes(b"one")
        >>> before = image_files_digest([f], contents=True)
        >>> _ = f.write_bytes(b"two")
        >>> image_files_digest([f], contents=True) == before
        False
    """
    h = hashlib.sha256()
    for path in paths:
        try:
            st = path.stat()
        except FileNotFoundError:
            h.update(json.dumps([str(path), None]).encode())
            continue
        h.update(json.dumps([str(path), st.st_size, st.st_mtime_ns]).encode())
        if contents:
            with open(path, "rb") as f:
                h.update(hashlib.file_digest(f, "sha256").digest())
    return h.hexdigest()[:16]


def _need_int(entry: dict[str, Any], key: str, where: str) -> None:
    if key not in entry:
        raise ValueError(f"{where} field '{key}' missing; expected an integer id")
    value = entry[key]
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{where} field '{key}': expected an integer id, got {_what(value)}")


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _what(value: Any) -> str:
    """How a message names a value that came: ``null``, ``a dict`` or ``'big' (str)``."""
    if value is None:
        return "null"
    if isinstance(value, (dict, list)):
        return f"a {type(value).__name__}"
    text = repr(value)
    return f"{text[:40]}{'...' if len(text) > 40 else ''} ({type(value).__name__})"

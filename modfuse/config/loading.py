"""YAML in and out for configs: a strict reader (safe tags only, no duplicate keys, bounded
aliases) and the writers.

PyYAML's ``safe_load`` builds no Python objects, but it keeps the last of two equal keys
(a typo silently replaces a setting) and lets a few hundred bytes of nested aliases stand for
billions of nodes, which the validation then walks. :func:`load_yaml_text` refuses both.

Examples:
    >>> load_yaml_text("train: {lr: 0.01}")
    {'train': {'lr': 0.01}}
    >>> load_yaml_text("a: 1\\na: 2")
    Traceback (most recent call last):
    ...
    ValueError: malformed YAML: duplicate key 'a' at line 2, column 1 (first at line 1); ...
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from yaml.nodes import MappingNode, Node, SequenceNode

__all__ = ["MAX_NODES", "StrictSafeLoader", "load_yaml_text", "save_config", "to_yaml"]

#: The most nodes a document may expand to once every alias is replaced by what it names.
#: A config has hundreds; an alias bomb billions.
MAX_NODES = 100_000

_MERGE_TAG = "tag:yaml.org,2002:merge"


def _expanded_size(node: Node, memo: dict[int, int]) -> int:
    """Nodes in ``node`` with aliases expanded; linear in the distinct nodes (memoized)."""
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = 1  # a recursive alias counts once instead of looping
    size = 1
    if isinstance(node, SequenceNode):
        size += sum(_expanded_size(child, memo) for child in node.value)
    elif isinstance(node, MappingNode):
        size += sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    memo[key] = size
    return size


class StrictSafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects duplicate mapping keys and alias bombs.

    A key given twice in one mapping is an error (a merge ``<<: *base`` may still be
    overridden, as YAML intends). A document that would expand to more than
    :data:`MAX_NODES` nodes is refused before anything is built.
    """

    def construct_document(self, node: Node) -> Any:
        size = _expanded_size(node, {})
        if size > MAX_NODES:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"the document expands to {size} nodes through its aliases (&anchor / *alias); "
                f"expected at most {MAX_NODES}",
                node.start_mark,
            )
        return super().construct_document(node)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, MappingNode):
            first: dict[Any, Node] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    earlier = first.setdefault(key, key_node)
                except TypeError:
                    continue  # an unhashable key: the base class reports it
                if earlier is not key_node:
                    mark = key_node.start_mark
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"duplicate key {key!r} at line {mark.line + 1}, column {mark.column + 1} "
                        f"(first at line {earlier.start_mark.line + 1}); give each key once",
                        mark,
                    )
        return super().construct_mapping(node, deep=deep)


def load_yaml_text(text: str) -> Any:
    """Parse YAML (or JSON) with :class:`StrictSafeLoader`.

    Raises:
        ValueError: the text is not YAML, uses a tag that builds Python objects, repeats a key
            in one mapping, expands to more than :data:`MAX_NODES` nodes or nests too deeply.
    """
    try:
        return yaml.load(text, Loader=StrictSafeLoader)  # a SafeLoader: no Python objects
    except yaml.YAMLError as err:
        raise ValueError(f"malformed YAML: {err}") from err
    except RecursionError as err:
        raise ValueError("malformed YAML: nested too deeply for a config") from err


def to_yaml(cfg: BaseModel) -> str:
    """A config as YAML text."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def save_config(cfg: BaseModel, path: str | os.PathLike) -> None:
    """Write a config as YAML (``.yaml``/``.yml``) or JSON (anything else), atomically."""
    from modfuse.io.tensor_files import atomic_write_bytes

    path = Path(path)
    if path.suffix in (".yaml", ".yml"):
        text = to_yaml(cfg)
    else:
        text = cfg.model_dump_json(indent=2) + "\n"
    atomic_write_bytes(path, text.encode())

"""The package map of docs/concepts.md is true: each subpackage imports only what its "may
import" column names, and every subpackage of modfuse has a row."""

from __future__ import annotations

import re
from pathlib import Path

from tests.test_import_graph import MODULES, edges

ROOT = Path(__file__).parents[1]
TOP = "the top level"


def package_of(module: str) -> str:
    """``modfuse.robustness.sanity.flags`` -> ``robustness``; top-level modules -> TOP."""
    parts = module.split(".")
    is_package = MODULES[module].name == "__init__.py"
    if len(parts) == 1 or (len(parts) == 2 and not is_package):
        return TOP
    return parts[1]


def documented_map() -> dict[str, set[str]]:
    text = (ROOT / "docs" / "concepts.md").read_text().split("## Package map", 1)[1]
    allowed: dict[str, set[str]] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        name = cells[0].split()[0].strip("`")
        package = TOP if name == "modfuse" else name
        may = {TOP} if TOP in cells[2] else set()
        may |= set(re.findall(r"`(\w+)`", cells[2]))
        allowed[package] = may | ({"*"} if "every package" in cells[2] else set())
    return allowed


def actual_map() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for name in MODULES:
        here = package_of(name)
        if name in ("modfuse", "modfuse.__main__"):
            continue  # the front door imports what it exports
        for dep in edges(name):
            there = package_of(dep)
            if there != here:
                found.setdefault(here, set()).add(there)
    return found


def test_the_map_has_a_row_for_every_subpackage():
    packages = {package_of(n) for n in MODULES}
    assert packages == set(documented_map()), packages ^ set(documented_map())


def test_each_package_imports_only_what_the_map_allows():
    allowed = documented_map()
    wrong = {
        package: sorted(deps - allowed[package])
        for package, deps in actual_map().items()
        if "*" not in allowed[package] and deps - allowed[package]
    }
    assert not wrong, f"imports the package map of docs/concepts.md does not allow: {wrong}"


def test_the_checker_sees_a_forbidden_import():
    allowed = documented_map()
    assert "training" not in allowed["model"]  # a model never knows its trainer
    found = actual_map()
    found["model"] = found.get("model", set()) | {"training"}
    assert found["model"] - allowed["model"] == {"training"}

"""The data package's shape: imports one way, small files, contracts instead of probes."""

import ast
from pathlib import Path

import pytest

import modfuse

PACKAGE = Path(modfuse.__file__).parent
DATA = PACKAGE / "data"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(name: str) -> set[str]:
    """The modfuse modules ``name`` imports anywhere in it (top level and in functions)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in MODULES}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                root = package
                for _ in range(node.level - 1):
                    root = root.rpartition(".")[0]
                base = f"{root}.{base}".rstrip(".")
            for a in node.names:
                # `from modfuse.data import cache` imports the submodule cache.
                sub = f"{base}.{a.name}"
                found |= {sub} if sub in MODULES else {base} & set(MODULES)
    return found - {name}


def data_graph() -> dict[str, set[str]]:
    """Imports among the modules of modfuse.data."""
    inside = [n for n in MODULES if n == "modfuse.data" or n.startswith("modfuse.data.")]
    return {n: {m for m in imports(n) if m in inside} for n in inside}


def test_no_import_cycle_among_the_data_modules():
    graph = data_graph()
    # cache -> loader and loader -> cache (for tensor_digest) was one; synthetic -> preview ->
    # synthetic (for make_synthetic_coco) another.
    for start in graph:
        seen, todo = set(), list(graph[start])
        while todo:
            n = todo.pop()
            assert n != start, f"{start} imports a module that imports it back"
            if n not in seen:
                seen.add(n)
                todo += graph[n]


@pytest.mark.parametrize(
    "name, allowed",
    [
        ("modfuse.data.hashing", {"modfuse.data.contracts"}),
        ("modfuse.data.contracts", {"modfuse.protocols"}),
        ("modfuse.data.loader", {"modfuse.data.hashing"}),
    ],
)
def test_shared_helpers_are_leaves(name, allowed):
    # What attack keys, distributed checks and the loader share must import none of them.
    assert imports(name) <= allowed, imports(name)


def test_no_attribute_probing_in_the_data_package():
    probes = [
        f"{p.name}:{node.lineno}"
        for p in sorted(DATA.glob("*.py"))
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in ("hasattr", "getattr")
    ]
    assert not probes, f"ask a protocol (modfuse.data.contracts) instead: {probes}"


def test_every_data_module_is_under_300_lines():
    long = {p.name: n for p in DATA.glob("*.py") if (n := len(p.read_text().splitlines())) >= 300}
    assert not long, long

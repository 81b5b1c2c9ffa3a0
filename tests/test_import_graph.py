"""No import cycles inside modfuse, and every module imports on its own.

The graph counts every ``import`` statement, at the top of a module, inside a function or
under ``if TYPE_CHECKING:`` (a function-level import that closes a cycle is still a cycle: it
hides the tangle, and breaks when the import order changes; a type-only import that closes
one is the same tangle, hidden from the interpreter but not from the reader).
``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "modfuse"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def resolve(importer: str, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` reads from (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    is_package = MODULES[importer].name == "__init__.py"
    base = importer.split(".")[: len(importer.split(".")) - node.level + is_package]
    return ".".join(base + ([node.module] if node.module else []))


def edges(name: str) -> set[str]:
    """The modfuse modules that module ``name`` imports, anywhere in its source (type-only
    imports under ``if TYPE_CHECKING:`` included)."""
    return source_edges(name, MODULES[name].read_text())


def source_edges(name: str, source: str) -> set[str]:
    """The modfuse modules that ``source``, read as module ``name``, imports."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in MODULES}
        elif isinstance(node, ast.ImportFrom):
            source = resolve(name, node)
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                out.add(sub if sub in MODULES else source)
    return {m for m in out if m in MODULES and m != name}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_finder_sees_a_cycle_through_a_function_level_import():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    source = "def f():\n    from modfuse.model.fusion_model import FusionModel\n"
    assert source_edges("modfuse.io.tensor_files", source) == {"modfuse.model.fusion_model"}


def test_the_graph_counts_type_only_imports():
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from modfuse.robustness.sweep import Sweep\n"
        "    import modfuse.robustness.plan\n"
    )
    found = source_edges("modfuse.robustness.inputs", source)
    assert found == {"modfuse.robustness.sweep", "modfuse.robustness.plan"}
    graph = {name: edges(name) for name in MODULES}
    assert "modfuse.robustness.sweep" in graph["modfuse.robustness.plan"]
    graph["modfuse.robustness.sweep"] = graph["modfuse.robustness.sweep"] | found
    # sweep -> plan -> sweep, closed by a type-only import
    cycle = find_cycle(graph)
    assert cycle is not None
    assert set(cycle) == {"modfuse.robustness.plan", "modfuse.robustness.sweep"}


def test_no_import_cycle_in_the_package():
    graph = {name: edges(name) for name in MODULES}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


ALONE = """
import importlib, sys, traceback
failed = []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m == "modfuse" or m.startswith("modfuse.")]:
        del sys.modules[loaded]  # a fresh modfuse for each module; torch stays loaded
    try:
        importlib.import_module(name)
    except Exception:
        failed.append(name + ": " + traceback.format_exc(limit=3))
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""


def test_each_module_imports_alone():
    """Each module imported first, into a fresh modfuse (no other module loaded before it)."""
    # importing a __main__ module runs its command
    names = sorted(n for n in MODULES if not n.endswith("__main__"))
    done = subprocess.run(
        [sys.executable, "-c", ALONE, *names], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]

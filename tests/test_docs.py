"""Every code block marked runnable in docs/ runs, so the docs cannot rot."""

import os
import re
from pathlib import Path

import pytest

from modfuse._registry import ATTACKS, ENCODERS, FUSIONS, REGULARIZERS

DOCS = Path(__file__).parents[1] / "docs"
BLOCK = re.compile(r"<!-- runnable -->\s*```python\n(.*?)```", re.S)
PAGES = sorted(p for p in DOCS.rglob("*.md") if BLOCK.search(p.read_text()))


def test_runnable_blocks_exist():
    assert len(PAGES) >= 4, PAGES


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(DOCS)))
def test_page_blocks_run(page, tmp_path):
    registries = (ATTACKS, ENCODERS, FUSIONS, REGULARIZERS)
    before = [set(r.names()) for r in registries]
    namespace: dict = {"__name__": f"docs_{page.stem}"}
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        for i, block in enumerate(BLOCK.findall(page.read_text())):
            code = compile(block, f"{page.name}[block {i + 1}]", "exec")
            exec(code, namespace)  # noqa: S102 - the docs' own examples
    finally:
        os.chdir(cwd)
        # Components a page registers are the page's own: leave the registries as they were.
        for registry, names in zip(registries, before):
            for name in set(registry.names()) - names:
                registry.unregister(name)

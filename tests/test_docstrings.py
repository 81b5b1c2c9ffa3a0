"""Every ``Example:`` in a public docstring runs and prints what it claims."""

import doctest
import importlib
import pkgutil

import pytest

import modfuse

MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(modfuse.__path__, "modfuse.")
    if not m.name.endswith("__main__")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"


def test_examples_exist_in_public_modules():
    # A docstring with no example would make the test above pass vacuously.
    finder = doctest.DocTestFinder()
    with_examples = [
        n for n in MODULES if any(t.examples for t in finder.find(importlib.import_module(n)))
    ]
    assert len(with_examples) >= 10, with_examples

"""docs/concepts.md names every attack modfuse registers (issue 21, item 12).

The "Registered:" sentence of its Attacks section is the list users read; an attack added to
the registry without a mention there fails this test.
"""

import re
from pathlib import Path

import pytest

import modfuse.attacks  # noqa: F401  (registers the built-in attacks)
from modfuse._registry import ATTACKS

CONCEPTS = Path(__file__).resolve().parents[1] / "docs" / "concepts.md"


def documented(text: str) -> set[str]:
    """The names in backticks of the "Registered:" paragraph of the Attacks section, leaving
    out what parentheses say about them (argument names such as `target_classes`)."""
    section = text.split("\n## Attacks\n", 1)[1].split("\n## ", 1)[0]
    paragraph = section.split("Registered:", 1)[1].split("\n\n", 1)[0]
    return set(re.findall(r"`([\w:]+)`", re.sub(r"\([^)]*\)", "", paragraph)))


def built_in() -> set[str]:
    """Attacks registered by modfuse itself (tests and tutorials register their own)."""
    return {
        n for n in ATTACKS.names() if ATTACKS.resolve(n).factory.__module__.startswith("modfuse.")
    }


def test_concepts_lists_every_registered_attack_and_no_other():
    names = documented(CONCEPTS.read_text())
    assert {"apgd", "square", "worst_case", "fgsm", "torchattacks"} <= names
    assert built_in() - names == set(), "registered but not in docs/concepts.md"
    assert names - set(ATTACKS.names()) == set(), "in docs/concepts.md but not registered"


def test_a_new_attack_without_a_line_would_fail():
    class Newcomer:
        pass

    Newcomer.__module__ = "modfuse.attacks.newcomer"
    ATTACKS.register("newcomer")(Newcomer)
    try:
        assert built_in() - documented(CONCEPTS.read_text()) == {"newcomer"}
    finally:
        ATTACKS.unregister("newcomer")


def test_the_paragraph_is_read_as_written():
    text = "x\n## Attacks\n\nRegistered: `a` (L2, `arg`), `b:c`.\n\nNot `d`.\n## Next\n`e`"
    assert documented(text) == {"a", "b:c"}
    with pytest.raises(IndexError):
        documented("## Other\nRegistered: `a`")

"""Check a built docs site as a reader's browser would load it, without a browser: every image
a page shows exists, and every internal link leads to a file (and, with a #fragment, to an
element of that id).

Usage: python .ci/check_site.py SITE_DIR   (exit 1 with a list of what is broken)
"""

from __future__ import annotations

import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v for k, v in attrs if v is not None}
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "img" and "src" in a:
            self.images.append(a["src"])
        elif tag == "a" and "href" in a:
            self.links.append(a["href"])


def _parse(page: Path) -> _Refs:
    refs = _Refs()
    refs.feed(page.read_text(encoding="utf-8", errors="replace"))
    return refs


def _target(page: Path, ref: str, site: Path) -> tuple[Path, str] | None:
    """The file (and fragment) an internal reference points to; None for external ones."""
    parts = urlsplit(ref)
    if parts.scheme or parts.netloc or ref.startswith(("mailto:", "javascript:", "data:")):
        return None
    path = unquote(parts.path)
    if not path:
        return page, parts.fragment
    base = site if path.startswith("/") else page.parent
    target = (base / path.lstrip("/")).resolve()
    if target.is_dir() or path.endswith("/"):
        target = target / "index.html"
    return target, parts.fragment


def check(site: Path) -> list[str]:
    """Every broken image or internal link of the site, as 'page: what'."""
    site = site.resolve()
    pages = sorted(site.rglob("*.html"))
    parsed = {p: _parse(p) for p in pages}
    problems = []
    for page, refs in parsed.items():
        where = page.relative_to(site)
        for src in refs.images:
            target = _target(page, src, site)
            if target is not None and not target[0].is_file():
                problems.append(f"{where}: image {src} does not exist")
        for href in refs.links:
            target = _target(page, href, site)
            if target is None:
                continue
            path, fragment = target
            if not path.is_file():
                problems.append(f"{where}: link {href} leads to no file")
            elif fragment and path.suffix == ".html":
                ids = parsed[path].ids if path in parsed else _parse(path).ids
                if fragment not in ids:
                    problems.append(f"{where}: link {href}: no element with id {fragment!r}")
    if not pages:
        problems.append(f"{site}: no HTML pages (was the site built?)")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    problems = check(Path(argv[0]))
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        print(f"{len(problems)} broken references in the docs site", file=sys.stderr)
        return 1
    pages = len(list(Path(argv[0]).rglob("*.html")))
    print(f"docs site: {pages} pages, every image and internal link resolves")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

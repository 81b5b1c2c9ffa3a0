"""The docs-site check of .ci/run finds a missing figure and a broken internal link."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / ".ci" / "check_site.py"
spec = importlib.util.spec_from_file_location("check_site", SCRIPT)
check_site = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_site)


def write_site(root: Path) -> None:
    (root / "img").mkdir(parents=True)
    (root / "img" / "plot.png").write_bytes(b"\x89PNG")
    (root / "guide").mkdir()
    (root / "index.html").write_text(
        '<h1 id="top">Home</h1><img src="img/plot.png"><a href="guide/">guide</a>'
        '<a href="https://example.org/x">out</a><a href="#top">up</a>'
    )
    (root / "guide" / "index.html").write_text(
        '<img src="../img/plot.png"><a href="../index.html#top">home</a>'
    )


def test_a_whole_site_passes(tmp_path):
    write_site(tmp_path)
    assert check_site.check(tmp_path) == []
    assert check_site.main([str(tmp_path)]) == 0


def test_a_deleted_figure_and_broken_links_fail(tmp_path):
    write_site(tmp_path)
    (tmp_path / "img" / "plot.png").unlink()
    (tmp_path / "guide" / "index.html").write_text(
        '<a href="../nowhere/">x</a><a href="../index.html#gone">y</a>'
    )
    problems = check_site.check(tmp_path)
    assert "index.html: image img/plot.png does not exist" in problems
    assert "guide/index.html: link ../nowhere/ leads to no file" in problems
    assert "guide/index.html: link ../index.html#gone: no element with id 'gone'" in problems
    assert check_site.main([str(tmp_path)]) == 1

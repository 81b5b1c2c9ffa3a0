"""The Studies page's complete example runs as written: its module and its YAML, from the
folder that holds them, and `modfuse list --import` shows the page's encoder."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
PAGE = ROOT / "docs" / "studies.md"


def block(marker: str, language: str) -> str:
    found = re.search(rf"<!-- {marker} -->\s*```{language}\n(.*?)```", PAGE.read_text(), re.S)
    assert found, f"no {marker} block in {PAGE}"
    return found.group(1)


def test_the_pages_study_runs_from_its_own_folder(tmp_path):
    (tmp_path / "my_study.py").write_text(block("study-module", "python"))
    (tmp_path / "my_study.yaml").write_text(block("study-yaml", "yaml"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = [sys.executable, "-m", "modfuse", "study", "my_study.yaml", "--out", "runs/my_study",
           "--no-progress"]
    done = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads((tmp_path / "runs" / "my_study" / "results.json").read_text())
    assert [h["name"] for h in found["hypotheses"]] == ["context_helps"]
    assert found["hypotheses"][0]["verdict"] in ("holds", "does not hold")
    assert {r["model"] for r in found["rows"]} == {"fused", "sensor_only"}
    listed = subprocess.run([sys.executable, "-m", "modfuse", "list", "--import", "my_study"],
                            cwd=tmp_path, capture_output=True, text=True, env=env)
    assert "tiny_bag" in listed.stdout, listed.stderr


def test_the_schema_table_names_every_field():
    from modfuse.study.schema import Evaluation, StudyConfig

    text = PAGE.read_text()
    for field in StudyConfig.model_fields:
        assert f"| `{field}` |" in text or f"| `{field}." in text, field
    for field in Evaluation.model_fields:
        assert f"| `evaluation.{field}` |" in text, field

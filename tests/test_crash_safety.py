"""SIGKILL at a random point, run again: the same results as an uninterrupted run, no corrupt
file read."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from tests import crash_job

ROOT = Path(__file__).parents[1]


def start(job: str, path: Path, sleep: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.crash_job", job, str(path), "--sleep", str(sleep)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
    )


def test_killed_sweep_resumes_to_the_same_rows(tmp_path):
    reference = crash_job.sweep(str(tmp_path / "ref.json"))
    assert not (tmp_path / "ref.json").exists()  # removed when complete
    resume = tmp_path / "partial.json"
    proc = start("sweep", resume, sleep=0.01)
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if resume.is_file() and json.loads(resume.read_text())["batches"] >= 2:
            break
        time.sleep(0.01)
    time.sleep(random.uniform(0.0, 0.3))
    assert proc.poll() is None, "the sweep ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = json.loads(resume.read_text())["batches"]
    assert 2 <= done < 10  # 200 items in batches of 20
    resumed = crash_job.sweep(str(resume))
    assert resumed == reference
    assert not resume.exists()


def test_killed_cache_build_is_rebuilt_never_read_half_written(tmp_path):
    reference = crash_job.cache(str(tmp_path / "ref")).result
    root = tmp_path / "cache"
    marker = Path(f"{root}.started")
    killed_during_build = 0
    for _ in range(3):
        marker.unlink(missing_ok=True)
        proc = start("cache", root, sleep=0.04)  # 20 encoder calls: about 0.8 s of work
        deadline = time.time() + 60
        while not marker.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(random.uniform(0.0, 0.9))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed_during_build += 1
        proc.wait()
        again = crash_job.cache(str(root))
        assert again.rebuilt == []  # nothing damaged was ever published under an entry name
        for m in ("a", "b"):
            assert torch.equal(again.result.features[m], reference.features[m])
        assert torch.equal(again.result.labels, reference.labels)
        for entry in root.glob("*.safetensors"):
            entry.unlink()  # next attempt: kill at another point
    assert killed_during_build >= 1

"""Shared fixtures: small deterministic batches and models that run fast on 2 CPU cores."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import settings

torch.set_num_threads(2)

# CI runs the same hypothesis examples every time (a failure there is reproducible); local
# runs keep exploring new ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def feature_batch(dims: dict[str, int], batch: int = 4) -> dict[str, torch.Tensor]:
    """Random features ``{name: (batch, dim)}``."""
    return {m: torch.randn(batch, d) for m, d in dims.items()}

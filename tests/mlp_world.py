"""A tiny seeded one-modality model and the data it labels itself (every item right when
clean): what the sweep and report tests probe."""

import torch

from modfuse import FusionModel
from modfuse.data import StackedDataset


def mlp_world(n: int = 64) -> tuple[FusionModel, StackedDataset]:
    """An MLP on 8 features (3 classes) in eval mode, and ``n`` items labelled by it."""
    torch.manual_seed(0)
    model = FusionModel({"fg": {"name": "mlp", "in_dim": 8, "hidden": [16]}}, num_classes=3)
    model.eval()
    x = torch.randn(n, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model({"fg": x}).argmax(1)
    return model, StackedDataset({"fg": x}, y)

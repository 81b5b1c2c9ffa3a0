"""Small models and batches shared by the attack tests."""

import torch

from modfuse import ContextViews, FusionModel


def fg_bg_model(views: bool = False, missing: str = "zeros") -> FusionModel:
    torch.manual_seed(0)
    enc = {"name": "small_cnn", "width": 4, "depth": 2}
    return FusionModel(
        {"fg": enc, "bg": enc},
        "concat",
        num_classes=3,
        missing=missing,
        views=ContextViews(size=16) if views else None,
    )


def fg_bg_batch(b: int = 4, size: int = 16) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {
        "fg": torch.rand(b, 3, size, size, generator=g),
        "bg": torch.rand(b, 3, size, size, generator=g),
    }


def raw_batch(b: int = 3, size: int = 24) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    mask = torch.zeros(b, 1, size, size)
    mask[:, :, 5:15, 6:18] = 1
    return {"image": torch.rand(b, 3, size, size, generator=g), "mask": mask}


def fit_full_batch(model: torch.nn.Module, x, y: torch.Tensor, steps: int) -> torch.nn.Module:
    """Adam (lr 1e-2) on the whole batch for ``steps`` steps; the model comes back in eval mode."""
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()

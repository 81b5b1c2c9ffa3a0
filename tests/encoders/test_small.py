import pytest
import torch

from modfuse._registry import ENCODERS


@pytest.mark.parametrize(
    "spec,x,dim",
    [
        ({"name": "small_cnn", "width": 8, "depth": 3}, torch.rand(2, 3, 24, 24), 32),
        (
            {"name": "small_cnn", "in_channels": 1, "width": 4, "depth": 1},
            torch.rand(2, 1, 9, 9),
            4,
        ),
        ({"name": "mlp", "in_dim": 7, "hidden": [5, 3]}, torch.rand(2, 7), 3),
    ],
)
def test_encoder_out_dim_matches_output(spec, x, dim):
    enc = ENCODERS.create(spec)
    out = enc(x)
    assert enc.out_dim == dim and out.shape == (2, dim)
    out.sum().backward()
    assert all(p.grad is not None for p in enc.parameters())


def test_bad_sizes_raise():
    with pytest.raises(ValueError, match="must be >= 1"):
        ENCODERS.create({"name": "small_cnn", "width": 0})
    with pytest.raises(ValueError, match="must be >= 1"):
        ENCODERS.create({"name": "mlp", "in_dim": 0})

"""GPU-ready options, checked for correctness on the CPU: bf16 autocast, channels-last, compile."""

import torch

from modfuse import FusionModel
from modfuse.data import StackedDataset
from modfuse.training.trainer import Trainer


def image_task(n: int = 96) -> StackedDataset:
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (n,), generator=g)
    fg = torch.rand(n, 3, 16, 16, generator=g) * 0.5
    fg[:, 0] += 0.5 * y.view(-1, 1, 1).float()  # the label is in the red channel
    return StackedDataset({"fg": fg.clamp(0, 1)}, y)


def cnn() -> FusionModel:
    torch.manual_seed(0)
    return FusionModel({"fg": {"name": "small_cnn", "width": 8, "depth": 2}}, num_classes=2)


def test_bf16_autocast_trains():
    model = cnn()
    data = image_task()
    history = Trainer(model, epochs=4, lr=0.01, amp=True, device="cpu", progress=False).fit(
        data, data
    )
    assert all(torch.isfinite(torch.tensor(h["train_loss"])) for h in history)
    assert history[-1]["val_acc"] > 0.9
    assert next(model.parameters()).dtype == torch.float32  # weights stay fp32


def test_channels_last_gives_the_same_training():
    data = image_task()
    plain, cl = cnn(), cnn()
    Trainer(plain, epochs=2, progress=False, device="cpu").fit(data)
    Trainer(cl, epochs=2, progress=False, device="cpu", channels_last=True).fit(data)
    conv = cl.encoders["fg"].body[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    for k, v in plain.state_dict().items():
        torch.testing.assert_close(v, cl.state_dict()[k], atol=1e-4, rtol=1e-3)


def test_compiled_encoders_match_eager_and_save_the_same_keys(tmp_path):
    torch.manual_seed(0)
    mlp = {"name": "mlp", "in_dim": 4, "hidden": [8]}
    eager = FusionModel({"a": mlp}, num_classes=2)
    compiled = FusionModel({"a": mlp}, num_classes=2)
    compiled.load_state_dict(eager.state_dict())
    Trainer(compiled, epochs=1, compile=True, progress=False, device="cpu")  # compiles in place
    x = {"a": torch.rand(5, 4)}
    torch.testing.assert_close(compiled(x), eager(x), atol=1e-5, rtol=1e-5)
    assert list(compiled.state_dict()) == list(eager.state_dict())
    compiled.save(tmp_path / "m")
    assert torch.equal(FusionModel.load(tmp_path / "m")(x), eager(x))

"""Every trainable part of a FusionModel is trained: unimodal heads get their own loss, learned
placeholders need modality dropout, and DistributedDataParallel (find_unused_parameters=False)
never meets a parameter the loss does not reach."""

import json
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from modfuse import FusionModel
from modfuse.data import FeatureDataset, StackedDataset
from modfuse.regularizers import ModalityDropout
from modfuse.training.trainer import Trainer


def raw_data(n: int = 64) -> StackedDataset:
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(n, 3, generator=g), torch.randn(n, 3, generator=g)
    return StackedDataset({"a": a, "b": b}, (a[:, 0] + b[:, 0] > 0).long())


def feature_data(n: int = 64) -> FeatureDataset:
    g = torch.Generator().manual_seed(4)
    a, b = torch.randn(n, 8, generator=g), torch.randn(n, 8, generator=g)
    return FeatureDataset({"a": a, "b": b}, (a[:, 0] - b[:, 1] > 0).long())


def model(**kwargs) -> FusionModel:
    torch.manual_seed(0)
    mlp = {"name": "mlp", "in_dim": 3, "hidden": [8]}  # out_dim 128 unless set
    return FusionModel({"a": mlp, "b": mlp}, num_classes=2, **kwargs)


def head_model(**kwargs) -> FusionModel:
    torch.manual_seed(0)
    mlp = {"name": "mlp", "in_dim": 2, "hidden": [8]}  # out_dim 8: fits feature_data
    return FusionModel({"a": mlp, "b": mlp}, num_classes=2, **kwargs)


def unimodal_state(m: FusionModel) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in m.unimodal.state_dict().items()}


def test_unimodal_heads_are_trained_and_learn_their_modality():
    m = head_model(unimodal_heads=True)
    before = unimodal_state(m)
    Trainer(m, epochs=20, lr=0.05, progress=False).fit(feature_data(256))
    after = m.unimodal.state_dict()
    assert all(not torch.equal(before[k], after[k]) for k in before)
    data = feature_data(256)
    with torch.no_grad():
        logits = m.unimodal_logits(data.features)
    # The label is a[:, 0] - b[:, 1] > 0: each modality alone predicts it well above chance.
    for name in ("a", "b"):
        acc = (logits[name].argmax(1) == data.labels).float().mean()
        assert acc > 0.65, (name, acc)


def test_unimodal_weight_adds_the_mean_unimodal_cross_entropy():
    data = raw_data(16)
    batch = {"a": data.tensors["a"], "b": data.tensors["b"], "label": data.labels}
    losses = {}
    for w in (0.0, 2.5):
        m = model(unimodal_heads=True)
        trainer = Trainer(m, unimodal_weight=w, progress=False, device="cpu")
        losses[w], _ = trainer.objective(batch, on_features=False)
    with torch.no_grad():
        per = m.unimodal_logits(m.encode({"a": batch["a"], "b": batch["b"]}))
        expected = sum(F.cross_entropy(per[k], data.labels) for k in ("a", "b")) / 2
    torch.testing.assert_close(losses[2.5] - losses[0.0], 2.5 * expected)


def test_unimodal_weight_defaults_follow_the_model_and_zero_leaves_heads_alone():
    assert Trainer(model(unimodal_heads=True), progress=False).objective.unimodal_weight == 1.0
    assert Trainer(model(), progress=False).objective.unimodal_weight == 0.0
    m = model(unimodal_heads=True)
    before = unimodal_state(m)
    Trainer(m, epochs=1, unimodal_weight=0, progress=False).fit(raw_data())
    assert all(torch.equal(before[k], v) for k, v in m.unimodal.state_dict().items())


def test_unimodal_weight_without_heads_is_refused_naming_both():
    with pytest.raises(ValueError, match=r"unimodal_weight=1\.0 .* unimodal_heads=False"):
        Trainer(model(), unimodal_weight=1.0, progress=False)
    with pytest.raises(ValueError, match="unimodal_weight must be a finite number >= 0"):
        Trainer(model(unimodal_heads=True), unimodal_weight=-1.0, progress=False)


def test_learned_placeholders_need_a_dropout_that_hides_their_modality():
    with pytest.raises(ValueError, match=r"missing='learned'.*\['a', 'b'\].*modality_dropout"):
        Trainer(model(missing="learned"), progress=False)
    with pytest.raises(ValueError, match=r"for \['a'\]"):  # only b may be hidden
        Trainer(
            model(missing="learned"),
            regularizers=[ModalityDropout(0.3, modalities=["b"])],
            progress=False,
        )
    with pytest.raises(ValueError, match="missing='learned'"):  # p=0 hides nothing
        Trainer(model(missing="learned"), regularizers=[ModalityDropout(0.0)], progress=False)
    m = model(missing="learned")
    Trainer(m, epochs=2, modality_dropout=0.3, progress=False).fit(raw_data())
    assert all(bool(p.abs().sum() > 0) for p in m.placeholders.values())  # they moved off 0


def test_a_dropout_naming_an_unknown_modality_is_refused():
    with pytest.raises(KeyError, match="names modality 'c'"):
        Trainer(model(), regularizers=[ModalityDropout(0.3, modalities=["c"])], progress=False)


# ---------------------------------------------------------------- DistributedDataParallel
def worker(rank: int, world: int, rdv: str, out: str) -> None:
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rdv}", rank=rank, world_size=world)
    seen: list = []
    original = DistributedDataParallel.__init__

    def record(self, module, *args, **kwargs):
        seen.append(kwargs.get("find_unused_parameters", False))
        original(self, module, *args, **kwargs)

    DistributedDataParallel.__init__ = record
    result: dict = {}
    try:
        runs = {
            # End to end on raw inputs: encoders, fusion, unimodal heads and placeholders.
            "raw": (model(unimodal_heads=True, missing="learned"), raw_data()),
            # On cached features: no encoder takes part in the loss.
            "features": (head_model(unimodal_heads=True, missing="learned"), feature_data()),
        }
        for name, (m, data) in runs.items():
            fresh = {k: v.clone() for k, v in m.state_dict().items()}
            Trainer(
                m,
                epochs=2,
                batch_size=8,
                lr=0.05,
                modality_dropout=0.3,
                progress=False,
                workers=0,
                device="cpu",
            ).fit(data)
            state = m.state_dict()
            result[name] = {
                "state": {k: v.tolist() for k, v in state.items()},
                "moved": sorted(k for k, v in state.items() if not torch.equal(v, fresh[k])),
            }
        result["find_unused_parameters"] = seen
    finally:
        DistributedDataParallel.__init__ = original
        with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
            json.dump(result, f)
        dist.destroy_process_group()


def test_ddp_without_find_unused_parameters_trains_heads_and_placeholders(tmp_path):
    mp.spawn(worker, args=(2, str(tmp_path / "rdv"), str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for got in ranks:
        assert got["find_unused_parameters"] == [False, False]  # one DDP per fit
    for name in ("raw", "features"):
        a, b = ranks[0][name], ranks[1][name]
        assert a["state"] == b["state"], f"{name}: the ranks' weights differ"
        moved = a["moved"]
        for part in ("unimodal.a.weight", "unimodal.b.weight", "placeholders.a", "fusion."):
            assert any(k.startswith(part) for k in moved), (name, part, moved)
        encoders_moved = any(k.startswith("encoders.") for k in moved)
        assert encoders_moved == (name == "raw"), (name, moved)

import pytest
import torch

from modfuse import FusionModel
from modfuse.attacks import FGSM, GaussianBlur, GaussianNoise
from modfuse.data import FeatureDataset, StackedDataset
from modfuse.robustness import Sweep, feature_shift, robustness_sweep, wilson_interval


def image_data(n: int = 24) -> StackedDataset:
    g = torch.Generator().manual_seed(0)
    return StackedDataset(
        {"fg": torch.rand(n, 3, 16, 16, generator=g), "bg": torch.rand(n, 3, 16, 16, generator=g)},
        torch.randint(0, 3, (n,), generator=g),
    )


def image_models() -> dict[str, FusionModel]:
    torch.manual_seed(0)
    enc = {"name": "small_cnn", "width": 4, "depth": 2}
    joint = FusionModel({"fg": enc, "bg": enc}, num_classes=3)
    fg = FusionModel({"fg": enc}, num_classes=3)
    fg.encoders["fg"].load_state_dict(joint.encoders["fg"].state_dict())
    bg = FusionModel({"bg": enc}, num_classes=3)
    return {"joint": joint, "fg_only": fg, "bg_only": bg}


def direct_accuracy(model, data, attack=None) -> float:
    model.eval()
    x = {k: v for k, v in data.tensors.items() if k in model.modalities}
    if attack is not None and all(t in model.modalities for t in attack.targets):
        x = attack(model, x, data.labels)
    with torch.no_grad():
        return float((model(x).argmax(1) == data.labels).float().mean())


def test_sweep_matches_direct_evaluation():
    data, models = image_data(), image_models()
    sweeps = [
        Sweep("fg_blur", GaussianBlur(targets=("fg",)), [1.0, 3.0]),
        Sweep("fg_fgsm", FGSM(targets=("fg",)), [0.02, 0.1]),
    ]
    rows = robustness_sweep(models, data, sweeps, batch_size=10, progress=False)
    got = {(r["model"], r["perturbation"], r["strength"]): r for r in rows}
    assert len(rows) == 3 * 5
    for name, model in models.items():
        assert got[(name, "clean", 0.0)]["accuracy"] == pytest.approx(direct_accuracy(model, data))
        for s in (1.0, 3.0):
            want = direct_accuracy(model, data, GaussianBlur(s, targets=("fg",)))
            assert got[(name, "fg_blur", s)]["accuracy"] == pytest.approx(want), (name, s)
        for e in (0.02, 0.1):
            # Batches of 10 vs one batch: FGSM's mean loss differs in scale, not in sign.
            want = direct_accuracy(model, data, FGSM(e, targets=("fg",)))
            assert got[(name, "fg_fgsm", e)]["accuracy"] == pytest.approx(want), (name, e)
    # The background-only model does not take the foreground: its accuracy does not move.
    assert got[("bg_only", "fg_fgsm", 0.1)]["correct"] == got[("bg_only", "clean", 0.0)]["correct"]
    row = got[("joint", "fg_fgsm", 0.1)]
    assert row["n"] == 24 and row["ci_low"] <= row["accuracy"] <= row["ci_high"]


def test_transfer_attack_uses_the_source_model():
    data, models = image_data(), image_models()
    for m in models.values():
        m.eval()
        with torch.no_grad():
            m.fusion.bias.zero_()  # random biases would outweigh the features
    x = {"fg": data.tensors["fg"], "bg": data.tensors["bg"]}
    with torch.no_grad():
        data.labels = models["joint"](x).argmax(1)  # the joint model is right on every clean item
    sweep = Sweep("fgsm_from_fg", FGSM(targets=("fg",)), [0.03], source="fg_only")
    rows = robustness_sweep(models, data, [sweep], progress=False)
    joint = next(r for r in rows if r["model"] == "joint" and r["perturbation"] == "fgsm_from_fg")
    white_box = direct_accuracy(models["joint"], data, FGSM(0.03, targets=("fg",)))
    assert joint["accuracy"] > white_box + 0.2  # transferred: weaker than white-box
    adv = FGSM(0.03, targets=("fg",))(models["fg_only"], {"fg": x["fg"]}, data.labels)
    with torch.no_grad():
        want = (models["joint"]({**x, "fg": adv["fg"]}).argmax(1) == data.labels).float().mean()
    assert joint["accuracy"] == pytest.approx(float(want)) and joint["source"] == "fg_only"
    with pytest.raises(KeyError, match="source model 'nope'"):
        robustness_sweep(models, data, [Sweep("x", FGSM(), [0.1], source="nope")], progress=False)


def test_fgsm_sweep_takes_one_gradient_for_all_eps():
    model = image_models()["joint"].eval()
    x = {k: v for k, v in image_data().tensors.items()}
    y = image_data().labels
    attack = FGSM(targets=("fg",))
    eps = [0.0, 0.01, 0.03, 0.1, 0.3]
    swept = attack.sweep(model, x, y, eps)
    assert attack.last_counts["backward"] == 1
    for e, adv in zip(eps, swept):
        single = FGSM(e, targets=("fg",))(model, x, y)
        assert torch.equal(adv["fg"], single["fg"]) and adv["bg"] is x["bg"]


def test_feature_shift_of_an_untouched_modality_is_zero():
    model = image_models()["joint"]
    shift = feature_shift(model, image_data(), GaussianBlur(2.0, targets=("fg",)))
    assert shift["bg"]["relative_l2"] == 0.0 and shift["bg"]["cosine_distance"] < 1e-6
    assert shift["fg"]["relative_l2"] > 0.01


def test_feature_space_sweep_on_cached_features():
    g = torch.Generator().manual_seed(0)
    feats = FeatureDataset(
        {"a": torch.randn(50, 128, generator=g)}, torch.zeros(50, dtype=torch.long)
    )
    model = FusionModel({"a": {"name": "mlp", "in_dim": 3}}, num_classes=2)
    rows = robustness_sweep(
        {"m": model},
        feats,
        [Sweep("n", GaussianNoise(targets=("a",), seed=0), [0.0, 10.0])],
        progress=False,
    )
    acc = {r["strength"]: r["accuracy"] for r in rows if r["perturbation"] == "n"}
    clean = next(r["accuracy"] for r in rows if r["perturbation"] == "clean")
    assert acc[0.0] == clean and acc[10.0] != clean


def test_wilson_interval():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = wilson_interval(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-3) and hi == pytest.approx(0.5962, abs=1e-3)
    assert wilson_interval(100, 100)[1] == pytest.approx(1.0)


def _count_calls(module: torch.nn.Module, counts: dict, key: str) -> None:
    def hook(*_: object) -> None:
        counts[key] = counts.get(key, 0) + 1

    module.register_forward_hook(hook)


def test_clean_accuracy_comes_from_the_fgsm_gradient_pass():
    """The clean row is read off FGSM's gradient pass (at the clean input): the foreground
    encoder runs once for the gradient and once per eps, never for a separate clean pass; the
    clean features it computed serve the background sweep that follows."""
    data, model = image_data(), image_models()["joint"]
    counts: dict[str, int] = {}
    for m in ("fg", "bg"):
        _count_calls(model.encoders[m], counts, m)
    sweeps = [
        Sweep("fg_fgsm", FGSM(targets=("fg",)), [0.01, 0.05, 0.2]),
        Sweep("bg_blur", GaussianBlur(targets=("bg",)), [1.0, 2.0]),
    ]
    rows = robustness_sweep({"m": model}, data, sweeps, batch_size=24, progress=False, sanity=False)
    # fg: 1 gradient pass + 3 eps; bg: 1 clean + 2 blurred (before: fg 5, one clean pass more)
    assert counts == {"fg": 4, "bg": 3}
    got = {(r["perturbation"], r["strength"]): r["correct"] for r in rows}
    assert got[("clean", 0.0)] / 24 == pytest.approx(direct_accuracy(model, data))
    for s in (1.0, 2.0):
        want = direct_accuracy(model, data, GaussianBlur(s, targets=("bg",)))
        assert got[("bg_blur", s)] / 24 == pytest.approx(want)


def test_clean_accuracy_from_a_raw_image_attack_matches_the_plain_model():
    from modfuse import ContextViews

    g = torch.Generator().manual_seed(1)
    image = torch.rand(20, 3, 16, 16, generator=g)
    mask = torch.zeros(20, 1, 16, 16)
    mask[:, :, 4:12, 5:11] = 1
    views = ContextViews(size=16)
    data = StackedDataset(
        {"image": image, "mask": mask, **views(image, mask)},
        torch.randint(0, 3, (20,), generator=g),
    )
    torch.manual_seed(0)
    enc = {"name": "small_cnn", "width": 4, "depth": 2}
    model = FusionModel({"fg": enc, "bg": enc}, num_classes=3, views=views).eval()
    sweep = Sweep("img", FGSM(targets=("image",), ranges={"image": (0, 1)}), [0.05])
    rows = robustness_sweep({"m": model}, data, [sweep], batch_size=7, progress=False)
    with torch.no_grad():
        want = int((model({"image": image, "mask": mask}).argmax(1) == data.labels).sum())
    assert rows[0]["perturbation"] == "clean" and rows[0]["correct"] == want


def test_clean_row_does_not_depend_on_the_order_of_the_sweeps():
    """The clean accuracy read off FGSM's gradient pass is counted when a white-box attack
    that gives no clean pass (PGD) is swept before FGSM too (it once came out 0)."""
    from modfuse.attacks import PGD

    data, model = image_data(), image_models()["joint"]
    fgsm = Sweep("fgsm", FGSM(targets=("fg",)), [0.05])
    pgd = Sweep("pgd", PGD(targets=("fg",), steps=2, seed=0), [0.05])
    want = direct_accuracy(model, data)
    for sweeps in ([fgsm, pgd], [pgd, fgsm]):
        rows = robustness_sweep({"m": model}, data, sweeps, batch_size=10, progress=False)
        clean = next(r for r in rows if r["perturbation"] == "clean")
        assert clean["accuracy"] == pytest.approx(want) and want > 0, sweeps


def raw_world(n: int = 30):
    from modfuse import ContextViews

    g = torch.Generator().manual_seed(3)
    image = torch.rand(n, 3, 16, 16, generator=g)
    mask = torch.zeros(n, 1, 16, 16)
    mask[:, :, 3:12, 4:11] = 1
    torch.manual_seed(0)
    enc = {"name": "small_cnn", "width": 4, "depth": 2}
    model = FusionModel({"fg": enc, "bg": enc}, num_classes=3, views=ContextViews(size=16))
    for m in model.modules():  # statistics of this data, so the features vary between items
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
    with torch.no_grad():
        model.train()({"image": image, "mask": mask})
        for p in model.fusion.parameters():
            p.mul_(30)
        # labels the model gets right: the attacks then have work to do
        labels = model.eval()({"image": image, "mask": mask}).argmax(1)
    return model, image, mask, labels


def test_a_views_model_is_swept_on_data_holding_only_the_raw_image_and_mask():
    """A dataset of raw images and masks (what a user's loader yields) gives the same rows
    as one that also holds the views, with the default sanity checks on."""
    model, image, mask, labels = raw_world()
    sweeps = [
        Sweep("fg_fgsm", FGSM(targets=("fg",)), [0.05, 0.2]),
        Sweep("image_fgsm", FGSM(targets=("image",), ranges={"image": (0, 1)}), [0.05]),
        Sweep("bg_blur", GaussianBlur(targets=("bg",)), [2.0]),
    ]
    raw = StackedDataset({"image": image, "mask": mask}, labels)
    both = StackedDataset({"image": image, "mask": mask, **model.views(image, mask)}, labels)
    got = robustness_sweep({"m": model}, raw, sweeps, batch_size=12, progress=False)
    want = robustness_sweep({"m": model}, both, sweeps, batch_size=12, progress=False)
    assert [r["correct"] for r in got] == [r["correct"] for r in want]
    acc = {r["perturbation"]: r["accuracy"] for r in got if r["strength"] in (0.0, 0.2, 0.05)}
    assert acc["clean"] == 1.0 and acc["fg_fgsm"] < 1.0  # the attack moved the views
    assert got.flags == want.flags and got.checks == want.checks
    fgsm = FGSM(eps=0.1, targets=("fg",))
    assert feature_shift(model, raw, fgsm) == feature_shift(model, both, fgsm)


def test_models_with_different_views_on_raw_data_are_refused():
    from modfuse import ContextViews

    model, image, mask, labels = raw_world()
    other = FusionModel(
        {"fg": {"name": "small_cnn", "width": 4, "depth": 2}},
        num_classes=3,
        views=ContextViews(size=16, margin=0.5),
    )
    raw = StackedDataset({"image": image, "mask": mask}, labels)
    with pytest.raises(ValueError, match="must share one views setting"):
        robustness_sweep({"a": model, "b": other}, raw, [], progress=False)


def test_raw_data_holding_some_views_or_feeding_a_model_without_views_is_refused():
    """The clean pass would mix the data's fg with a computed bg, and a model without views
    would read another model's views: both are refused by name."""
    model, image, mask, labels = raw_world()
    partial = StackedDataset({"image": image, "mask": mask, "fg": image}, labels)
    with pytest.raises(ValueError, match=r"holds the view\(s\) \['fg'\] but not \['bg'\]"):
        robustness_sweep({"m": model}, partial, [], progress=False)
    plain = FusionModel(
        {m: {"name": "small_cnn", "width": 4, "depth": 2} for m in ("fg", "bg")}, num_classes=3
    )
    raw = StackedDataset({"image": image, "mask": mask}, labels)
    with pytest.raises(ValueError, match="model 'plain' has no views and takes"):
        robustness_sweep({"m": model, "plain": plain}, raw, [], progress=False)


def test_a_nan_in_the_raw_image_is_named_as_the_data_holds_it():
    model, image, mask, labels = raw_world()
    image = image.clone()
    image[0, 0, 0, 0] = float("nan")
    raw = StackedDataset({"image": image, "mask": mask}, labels)
    with pytest.raises(ValueError, match="input 'image' holds 1 NaN"):
        robustness_sweep({"m": model}, raw, [], progress=False)


def test_a_transfer_source_without_the_attacks_targets_is_refused_before_any_batch():
    from modfuse.attacks import FGSM
    from modfuse.data import StackedDataset

    models = {
        "joint": FusionModel({"fg": "small_cnn", "bg": "small_cnn"}, num_classes=2),
        "bg_only": FusionModel({"bg": "small_cnn"}, num_classes=2),
    }
    data = StackedDataset(
        {"fg": torch.rand(4, 3, 16, 16), "bg": torch.rand(4, 3, 16, 16)}, torch.tensor([0, 1] * 2)
    )
    sweep = Sweep("fg_fgsm", FGSM(targets=("fg",)), [0.01], source="bg_only")
    with pytest.raises(ValueError, match="source model 'bg_only' takes \\['bg'\\], not"):
        robustness_sweep(models, data, [sweep], progress=False)

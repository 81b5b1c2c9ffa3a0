"""Worst-case robust accuracy (issue 13): APGD, Square and the AutoAttack-style ensemble."""

import pytest
import torch
import torchattacks  # a dev dependency: the cross-check must run, never skip
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from modfuse import FusionModel
from modfuse._registry import ATTACKS
from modfuse.attacks.adapters import TorchAttacksAdapter
from modfuse.attacks.apgd import APGD, dlr_loss
from modfuse.attacks.blur import GaussianBlur
from modfuse.attacks.ensemble import Ensemble
from modfuse.attacks.fgsm import FGSM
from modfuse.attacks.pgd import PGD
from modfuse.attacks.square import Square, square_fraction
from modfuse.encoders.small_cnn import SmallCNN
from tests.attacks.common import fg_bg_batch, fg_bg_model

EPS = 8 / 255
CNN = {"name": "small_cnn", "width": 8, "depth": 2}


# ---------------------------------------------------------------- small trained models
def world(n: int, seed: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """3 classes told apart by a noisy template in fg (8x8); bg is noise."""
    templates = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(123)) * 2 - 1
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    fg = (0.5 + 0.2 * templates[y] + 0.15 * torch.randn(n, 3, 8, 8, generator=g)).clamp(0, 1)
    return {"fg": fg, "bg": torch.rand(n, 3, 8, 8, generator=g)}, y


class Quantized(nn.Module):
    """A small CNN behind ``round(x * 8) / 8`` (no straight-through): input gradients are 0."""

    def __init__(self) -> None:
        super().__init__()
        self.net = SmallCNN(width=8, depth=2)
        self.out_dim = self.net.out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(torch.round(x * 8) / 8)


def train(model: FusionModel) -> FusionModel:
    x, y = world(512, seed=0)
    x = {k: v for k, v in x.items() if k in model.modalities}
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(8):
        perm = torch.randperm(len(y), generator=g)
        for idx in perm.split(64):
            loss = nn.functional.cross_entropy(model({k: v[idx] for k, v in x.items()}), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def trained() -> dict[str, FusionModel]:
    torch.manual_seed(0)
    models = {"joint": FusionModel({"fg": CNN, "bg": CNN}, num_classes=3)}
    models["fg_only"] = FusionModel({"fg": CNN}, num_classes=3)
    models["masked"] = FusionModel({"fg": Quantized(), "bg": CNN}, num_classes=3)
    return {k: train(m) for k, m in models.items()}


def accuracy(model: nn.Module, x: dict, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


# ---------------------------------------------------------------- the attack contract
CASES = {
    "apgd_ce": lambda t: APGD(EPS, steps=5, targets=t, seed=0),
    "apgd_dlr": lambda t: APGD(EPS, steps=5, loss="dlr", targets=t, seed=0),
    "apgd_t": lambda t: APGD(EPS, steps=5, loss="dlr", target_classes=2, targets=t, seed=0),
    "square": lambda t: Square(EPS, queries=30, targets=t, seed=0),
    "worst_case": lambda t: Ensemble.standard(EPS, targets=t, steps=3, queries=20),
}


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("targets", [("fg",), ("fg", "bg")])
def test_contract_bound_range_untouched_keys_and_model_state(name, targets):
    model = fg_bg_model().train()
    params = list(model.parameters())
    params[0].grad = torch.full_like(params[0], 0.25)
    x = fg_bg_batch(6)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    out = CASES[name](targets)(model, x, y)
    assert model.training and all(m.training for m in model.modules()), "mode not restored"
    assert torch.equal(params[0].grad, torch.full_like(params[0], 0.25))
    assert all(p.grad is None for p in params[1:]), "parameter gradients accumulated"
    assert torch.equal(x["fg"], fg_bg_batch(6)["fg"]), "input modified in place"
    for k in x:
        if k not in targets:
            assert out[k] is x[k], f"untouched key {k} was replaced"
            continue
        assert out[k].shape == x[k].shape and out[k].dtype == x[k].dtype
        assert 0 <= out[k].min() and out[k].max() <= 1, "left the valid range"
        assert (out[k] - x[k]).abs().max() <= EPS + 1e-6, "left the L-inf ball"
        assert not torch.equal(out[k], x[k]), f"{name} did not change {k}"


@pytest.mark.parametrize("name", CASES)
def test_zero_eps_returns_the_input(name):
    model, x, y = fg_bg_model(), fg_bg_batch(), torch.tensor([0, 1, 2, 0])
    out = CASES[name](("fg",)).with_strength(0.0)(model, x, y)
    assert torch.equal(out["fg"], x["fg"])


def test_apgd_l2_stays_in_its_ball():
    model, x = fg_bg_model().eval(), fg_bg_batch()
    y = model(x).argmax(1)  # all correct: every sample is attacked
    out = APGD(0.5, steps=5, norm="l2", seed=0)(model, x, y)
    norms = (out["fg"] - x["fg"]).flatten(1).norm(dim=1)
    assert norms.max() <= 0.5 + 1e-5 and norms.min() > 0


def test_square_searches_vectors_as_strips_without_clamping():
    torch.manual_seed(0)
    model = FusionModel({"vec": {"name": "mlp", "in_dim": 7, "hidden": [8]}}, num_classes=3)
    x = {"vec": torch.randn(5, 7) * 3}  # unbounded: no range, nothing clamped
    out = Square(0.5, queries=40, targets=("vec",), seed=0)(model, x, torch.tensor([0, 1, 2, 0, 1]))
    delta = (out["vec"] - x["vec"]).abs()
    assert delta.max() <= 0.5 + 1e-6 and delta.max() >= 0.5 - 1e-6


@pytest.mark.parametrize("make", [CASES["apgd_ce"], CASES["square"]])
def test_seeded_and_repeatable(make):
    model, x, y = fg_bg_model(), fg_bg_batch(), torch.tensor([0, 1, 2, 0])
    a, b = make(("fg",))(model, x, y)["fg"], make(("fg",))(model, x, y)["fg"]
    other = make(("fg",))
    other.seed = 7
    assert torch.equal(a, b) and not torch.equal(a, other(model, x, y)["fg"])


def test_dlr_loss_is_shift_and_scale_invariant_and_needs_three_classes():
    z = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    y, t = torch.tensor([0, 1, 2, 3, 4, 0]), torch.tensor([1, 2, 3, 4, 0, 2])
    for target in (None, t):
        torch.testing.assert_close(dlr_loss(3 * z + 7, y, target), dlr_loss(z, y, target))
    # Untargeted DLR is positive exactly where the model is fooled.
    assert torch.equal(dlr_loss(z, y) > 0, z.argmax(1) != y)
    with pytest.raises(ValueError, match="at least 3 classes, got 2"):
        dlr_loss(z[:, :2], torch.zeros(6, dtype=torch.long))
    torch.manual_seed(0)
    binary = FusionModel({"fg": {"name": "mlp", "in_dim": 4}}, num_classes=2)
    with pytest.raises(ValueError, match="at least 3 classes"):
        APGD(0.1, steps=2, loss="dlr")(binary, {"fg": torch.rand(3, 4)}, torch.tensor([0, 1, 0]))


def test_square_schedule_halves_from_p_init():
    assert [square_fraction(0.8, i, 1000) for i in (0, 2, 6, 21)] == [0.8, 0.4, 0.2, 0.1]


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda: APGD(loss="cw"), "loss must be one of \\('ce', 'dlr'\\), got 'cw'"),
        (lambda: APGD(norm="l1"), "norm must be one of"),
        (lambda: APGD(target_classes=3), "target_classes needs loss='dlr'"),
        (lambda: APGD(loss="dlr", targeted=True), "takes true labels"),
        (lambda: APGD(steps=0), "steps must be an integer >= 1, got 0"),
        (lambda: Square(queries=1), "queries must be an integer >= 2, got 1"),
        (lambda: Square(p_init=0), "p_init must be in \\(0, 1\\], got 0"),
        (lambda: Square(loss=nn.functional.cross_entropy), "follows the logits' margin"),
        (lambda: Ensemble([]), "needs a list of member attacks"),
        (lambda: Ensemble(["fgsm", Square(targets=("bg",))]), "must attack \\('fg',\\)"),
        (lambda: Ensemble([GaussianBlur(1.0)]), "GaussianBlur's is 'sigma'"),
        (lambda: Ensemble([FGSM(targeted=True)]), "FGSM has targeted=True"),
        (lambda: Ensemble(["fgsm"], eps=-1.0), "eps must be >= 0, got -1.0"),
    ],
)
def test_bad_settings_are_refused_naming_what_was_expected(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_registered_and_built_from_specs():
    spec = {"name": "worst_case", "members": ["fgsm", {"name": "square", "queries": 9}]}
    attack = ATTACKS.create({**spec, "eps": 0.1, "targets": ["bg"]})
    assert isinstance(attack, Ensemble) and attack.targets == ("bg",)
    assert [type(m) for m in attack.members] == [FGSM, Square]
    assert all(m.targets == ("bg",) for m in attack.members) and attack.members[1].queries == 9
    assert isinstance(ATTACKS.create({"name": "apgd", "loss": "dlr"}), APGD)
    assert not Square().uses_gradients and attack.uses_gradients
    assert not Ensemble([Square()]).uses_gradients
    key = attack.fingerprint()
    assert key is not None and key != ATTACKS.create({**spec, "eps": 0.2}).fingerprint()


# ---------------------------------------------------------------- the worst case
def deterministic_members(ranges: dict, targets: tuple) -> list:
    """Members whose result for a sample does not depend on the rest of the batch."""
    kw = {"ranges": ranges, "targets": targets}
    return [
        FGSM(**kw),
        PGD(steps=3, random_start=False, **kw),
        APGD(steps=4, random_start=False, **kw),
        APGD(steps=4, loss="dlr", random_start=False, **kw),
    ]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**16),
    batch=st.integers(1, 8),
    classes=st.sampled_from([3, 4]),
    strengths=st.lists(st.floats(0, 0.4), min_size=1, max_size=3),
    with_square=st.booleans(),
    targets=st.sampled_from([("fg",), ("bg",), ("fg", "bg")]),
)
def test_worst_case_is_no_better_than_any_member_per_sample(
    seed, batch, classes, strengths, with_square, targets
):
    torch.manual_seed(seed)
    model = FusionModel(
        {"fg": {"name": "mlp", "in_dim": 6, "hidden": [8]}, "bg": {"name": "mlp", "in_dim": 3}},
        num_classes=classes,
    ).double()  # float64: rounding that depends on the batch size cannot flip a decision
    g = torch.Generator().manual_seed(seed)
    x = {"fg": torch.rand(batch, 6, generator=g).double(), "bg": torch.rand(batch, 3).double()}
    with torch.no_grad():
        y = model(x).argmax(1)
    y[::3] = (y[::3] + 1) % classes  # some samples are wrong to begin with
    ranges = {"fg": (0.0, 1.0), "bg": (0.0, 1.0)}
    members = deterministic_members(ranges, targets)
    square = [Square(queries=10, ranges=ranges, targets=targets, seed=seed)] if with_square else []
    ensemble = Ensemble(members + square, ranges=ranges)

    def correct(inputs: dict) -> torch.Tensor:
        with torch.no_grad():
            return model(inputs).argmax(1) == y

    for eps in strengths:
        attack = ensemble.with_strength(eps)
        worst = correct(attack(model, x, y))
        for member in members:
            survived = correct(member.with_strength(eps)(model, x, y))
            assert not (worst & ~survived).any(), f"{type(member).__name__} at eps={eps}"
        # The counts say the same as the outputs.
        report = attack.last_counts["members"]
        clean_wrong = int((~correct(x)).sum())
        assert clean_wrong + sum(r["broken"] for r in report) == batch - int(worst.sum())


def spied(cls: type) -> type:
    """``cls`` recording the fg inputs, labels and fg outputs of each call."""

    class Spied(cls):
        def __call__(self, model, inputs, labels):
            out = super().__call__(model, inputs, labels)
            self.calls.append((inputs["fg"], labels, out["fg"]))
            return out

    Spied.calls = []
    return Spied


def test_each_member_runs_only_on_the_samples_no_earlier_member_broke(trained):
    model = trained["joint"]
    x, y = world(96, seed=1)
    members = [
        spied(FGSM)(EPS),
        spied(PGD)(EPS, steps=5, seed=0),
        spied(APGD)(EPS, steps=10, seed=0),
        spied(Square)(EPS, queries=50, seed=0),
    ]
    ensemble = Ensemble(members)
    out = ensemble(model, x, y)
    with torch.no_grad():
        rows = (model(x).argmax(1) == y).nonzero().squeeze(1)  # clean-correct samples
    report = ensemble.last_counts["members"]
    runs = []
    for member, entry in zip(members, report):
        ((fg, labels, adv_fg),) = member.calls
        assert torch.equal(fg, x["fg"][rows]) and torch.equal(labels, y[rows])
        with torch.no_grad():
            survived = model({"fg": adv_fg, "bg": x["bg"][rows]}).argmax(1) == labels
        assert entry["run"] == len(rows) and entry["broken"] == int((~survived).sum())
        runs.append(len(rows))
        rows = rows[survived]
    with torch.no_grad():
        assert int((model(out).argmax(1) == y).sum()) == len(rows)
    # The cost follows the robust fraction: every member after the first ran on fewer samples.
    assert runs[0] > runs[1] > runs[2] >= runs[3] > 0, runs
    counts = ensemble.last_counts
    assert counts["backward"] == sum(r["backward"] for r in report) > 0
    assert report[3]["backward"] == 0 and report[3]["forward"] <= 50 + 1


def test_gradient_masking_fools_fgsm_but_not_the_worst_case(trained):
    model = trained["masked"]
    x, y = world(96, seed=1)
    eps = 16 / 255
    clean = accuracy(model, x, y)
    fgsm_out = FGSM(eps)(model, x, y)
    assert torch.equal(fgsm_out["fg"], x["fg"]), "the input gradient should be exactly zero"
    fgsm = accuracy(model, fgsm_out, y)
    worst = accuracy(model, Ensemble.standard(eps, steps=10, queries=200)(model, x, y), y)
    # Measured: clean 0.99, FGSM 0.99, worst case 0.18.
    assert fgsm == clean >= 0.9
    assert worst <= 0.4 and worst <= fgsm - 0.5, (fgsm, worst)


def test_robustness_sweep_of_a_masked_model_flags_it_and_shows_the_worst_case(trained):
    from modfuse.data import StackedDataset
    from modfuse.robustness import Sweep, robustness_sweep

    x, y = world(96, seed=1)
    eps = 16 / 255
    rows = robustness_sweep(
        {"masked": trained["masked"]},
        StackedDataset(x, y),
        [
            Sweep("fgsm", FGSM(targets=("fg",)), [eps]),
            Sweep("worst", Ensemble.standard(eps, steps=10, queries=200), [eps]),
        ],
        progress=False,
    )
    acc = {r["perturbation"]: r["accuracy"] for r in rows}
    assert acc["worst"] <= acc["fgsm"] - 0.5, acc
    # The zero input gradient is flagged, and the report's checks say the probe ran.
    assert "vanishing_gradient" in {f["check"] for f in rows.flags}, rows.flags
    status = {c["check"]: c["status"] for c in rows.checks}
    assert status["vanishing_gradient"] == "flagged", status


def test_apgd_is_at_least_as_strong_as_pgd_and_square_breaks_some(trained):
    model = trained["joint"]
    x, y = world(96, seed=1)
    clean = accuracy(model, x, y)
    pgd = accuracy(model, PGD(EPS, steps=20, seed=0)(model, x, y), y)
    apgd = accuracy(model, APGD(EPS, steps=20, seed=0)(model, x, y), y)
    square = accuracy(model, Square(EPS, queries=200, seed=0)(model, x, y), y)
    # Measured: clean 1.00, PGD 0.55, APGD-CE 0.53, Square 0.77.
    assert clean >= 0.95 and pgd <= clean - 0.2
    assert apgd <= pgd + 0.03, (apgd, pgd)
    assert square <= clean - 0.1, (square, clean)


@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_apgd_agrees_with_torchattacks(trained, loss):
    # One modality, so torchattacks (which attacks the unfooled subset) sees a plain model.
    model = trained["fg_only"]
    x, y = world(96, seed=1)
    x = {"fg": x["fg"]}
    ours = accuracy(model, APGD(EPS, steps=20, loss=loss, seed=0)(model, x, y), y)
    theirs_attack = TorchAttacksAdapter(
        torchattacks.APGD, "fg", eps=EPS, steps=20, loss=loss, seed=0
    )
    theirs = accuracy(model, theirs_attack(model, x, y), y)
    # Measured (clean 1.00): CE 0.43 vs 0.43, DLR 0.45 vs 0.46. The two differ in details
    # (which fooling point is kept, the first checkpoint's reference loss) and, with other
    # seeds, in their random starts: the robust accuracies must agree to within 5 points.
    assert abs(ours - theirs) <= 0.05, (ours, theirs)
    assert ours <= accuracy(model, x, y) - 0.2

"""Attack metadata (issue 13): reports and sanity checks ask ``norm``, ``strength_unit``,
``iterative`` and ``stronger_when``, never class names."""

import pytest
import torchattacks  # a dev dependency: the adapter's metadata must be checked, never skipped

from modfuse._registry import ATTACKS
from modfuse.attacks import (
    APGD,
    FGSM,
    PGD,
    Attack,
    DropModality,
    EmbeddingPGD,
    Ensemble,
    GaussianBlur,
    GaussianNoise,
    Square,
    TokenDrop,
    TokenSubstitution,
    TorchAttacksAdapter,
)
from modfuse.attacks.base import NORMS, STRENGTH_UNITS

# name -> (attack, (norm, strength_unit, iterative, stronger_when))
EXPECTED = {
    "fgsm": (FGSM(), ("linf", "linf", False, "higher")),
    "pgd": (PGD(), ("linf", "linf", True, "higher")),
    "pgd_l2": (PGD(norm="l2"), ("l2", "l2", True, "higher")),
    "apgd": (APGD(), ("linf", "linf", True, "higher")),
    "apgd_l2": (APGD(norm="l2"), ("l2", "l2", True, "higher")),
    "embedding_pgd": (EmbeddingPGD(), ("l2", "l2", True, "higher")),
    "embedding_pgd_linf": (EmbeddingPGD(norm="linf"), ("linf", "linf", True, "higher")),
    "square": (Square(), ("linf", "linf", True, "higher")),
    "worst_case": (Ensemble.standard(), ("linf", "linf", True, "higher")),
    "worst_case_l2": (
        Ensemble([PGD(0.5, norm="l2"), APGD(0.5, norm="l2")]),
        ("l2", "l2", True, "higher"),
    ),
    "blur": (GaussianBlur(), ("none", "sigma", False, "higher")),
    "noise": (GaussianNoise(), ("none", "std", False, "higher")),
    "noise_snr": (GaussianNoise(snr_db=20.0), ("none", "snr_db", False, "lower")),
    "drop": (DropModality(), ("none", "none", False, "higher")),
    "token_drop": (TokenDrop(), ("none", "rate", False, "higher")),
    "token_substitution": (TokenSubstitution(), ("none", "rate", False, "higher")),
    "ta_fgsm": (TorchAttacksAdapter("FGSM", eps=0.1), ("linf", "linf", False, "higher")),
    "ta_ffgsm": (TorchAttacksAdapter(torchattacks.FFGSM), ("linf", "linf", False, "higher")),
    "ta_pgd": (TorchAttacksAdapter("PGD", eps=0.1), ("linf", "linf", True, "higher")),
    "ta_pgdl2": (TorchAttacksAdapter("PGDL2", eps=1.0), ("l2", "l2", True, "higher")),
    "ta_apgd_l2": (TorchAttacksAdapter("APGD", norm="L2"), ("l2", "l2", True, "higher")),
    "ta_autoattack": (
        TorchAttacksAdapter("AutoAttack", norm="Linf"),
        ("linf", "linf", True, "higher"),
    ),
    "ta_square": (TorchAttacksAdapter(torchattacks.Square), ("linf", "linf", True, "higher")),
    "ta_cw": (TorchAttacksAdapter("CW"), ("none", "none", True, "higher")),
}


@pytest.mark.parametrize("name", EXPECTED)
def test_metadata(name):
    attack, expected = EXPECTED[name]
    got = (attack.norm, attack.strength_unit, attack.iterative, attack.stronger_when)
    assert got == expected
    assert attack.norm in NORMS and attack.strength_unit in STRENGTH_UNITS


def test_every_registered_attack_has_a_case():
    # A new attack must state its threat model here before it can be reported.
    classes = {type(a) for a, _ in EXPECTED.values()}
    registered = {ATTACKS.resolve(n).factory for n in ATTACKS.names() if not n.startswith("user_")}
    assert registered <= classes, registered - classes


def test_base_defaults_describe_no_threat_model():
    assert (Attack.norm, Attack.strength_unit, Attack.iterative, Attack.stronger_when) == (
        "none",
        "none",
        False,
        "higher",
    )


def test_metadata_follows_the_constructor_per_instance():
    # Set on the instance: one PGD's norm does not leak into another's, nor into the class.
    a, b = PGD(norm="l2"), PGD(norm="linf")
    assert (a.norm, b.norm, PGD.norm) == ("l2", "linf", "none")
    assert a.with_strength(0.3).strength_unit == "l2"


def test_ensemble_of_mixed_norms_is_refused_naming_each_member():
    with pytest.raises(ValueError, match=r"share one norm.*PGD: 'linf'.*APGD: 'l2'"):
        Ensemble([PGD(8 / 255), APGD(0.5, norm="l2")])


def test_region_and_metadata_enter_the_fingerprint():
    assert PGD(norm="l2").fingerprint() != PGD(norm="linf").fingerprint()
    assert (
        FGSM(targets=("image",), region="mask").fingerprint()
        != FGSM(targets=("image",)).fingerprint()
    )
    noise = GaussianNoise(snr_db=10.0)
    assert noise.fingerprint() != noise.with_strength(20.0).fingerprint()

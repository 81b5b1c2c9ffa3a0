"""NaN and inf are refused wherever a number enters an attack or a sweep, with a clear error."""

import pytest
import torch

from modfuse.attacks import (
    FGSM,
    PGD,
    EmbeddingPGD,
    GaussianBlur,
    GaussianNoise,
    TokenDrop,
    TokenSubstitution,
    TorchAttacksAdapter,
    gaussian_blur,
)
from modfuse.robustness import Sweep
from tests.attacks.common import fg_bg_batch, fg_bg_model

NAN, INF = float("nan"), float("inf")
Y = torch.tensor([0, 1, 2, 0])

CASES = {
    "fgsm_eps_nan": (lambda: FGSM(eps=NAN), "eps", "nan"),
    "fgsm_eps_inf": (lambda: FGSM(eps=INF), "eps", "inf"),
    "fgsm_eps_minus_inf": (lambda: FGSM(eps=-INF), "eps", "-inf"),
    "fgsm_per_key_eps": (lambda: FGSM(eps={"fg": 0.1, "bg": NAN}), "eps", "nan"),
    "pgd_eps": (lambda: PGD(eps=INF), "eps", "inf"),
    "pgd_alpha": (lambda: PGD(alpha=NAN), "alpha", "nan"),
    "pgd_per_key_alpha": (lambda: PGD(alpha={"fg": INF}), "alpha", "inf"),
    "pgd_steps": (lambda: PGD(steps=INF), "steps", "inf"),
    "pgd_steps_nan": (lambda: PGD(steps=NAN), "steps", "nan"),
    "embedding_pgd_eps": (lambda: EmbeddingPGD(eps=NAN), "eps", "nan"),
    "blur_sigma": (lambda: GaussianBlur(sigma=NAN), "sigma", "nan"),
    "blur_per_key_sigma": (lambda: GaussianBlur(sigma={"fg": INF}), "sigma", "inf"),
    "blur_range_tuple": (lambda: GaussianBlur(sigma=(0.5, INF)), "sigma", "inf"),
    "blur_range_list": (lambda: GaussianBlur(sigma=[NAN, 2.0]), "sigma", "nan"),
    "blur_truncate": (lambda: GaussianBlur(truncate=INF), "truncate", "inf"),
    "gaussian_blur_sigma": (lambda: gaussian_blur(torch.rand(2, 3, 8, 8), NAN), "sigma", "nan"),
    "gaussian_blur_per_sample": (
        lambda: gaussian_blur(torch.rand(2, 3, 8, 8), torch.tensor([1.0, INF])),
        "sigma",
        "inf",
    ),
    "noise_std": (lambda: GaussianNoise(std=INF), "std", "inf"),
    "noise_per_key_std": (lambda: GaussianNoise(std={"fg": NAN}), "std", "nan"),
    "noise_snr_db": (lambda: GaussianNoise(snr_db=NAN), "snr_db", "nan"),
    "noise_snr_db_inf": (lambda: GaussianNoise(snr_db=-INF), "snr_db", "-inf"),
    "token_drop_rate": (lambda: TokenDrop(rate=NAN), "rate", "nan"),
    "token_substitution_rate": (lambda: TokenSubstitution(rate=INF), "rate", "inf"),
    "adapter_eps": (lambda: TorchAttacksAdapter("FGSM", eps=NAN), "eps", "nan"),
    "adapter_alpha": (lambda: TorchAttacksAdapter("PGD", eps=0.1, alpha=INF), "alpha", "inf"),
    "with_strength_eps": (lambda: FGSM().with_strength(NAN), "eps", "nan"),
    "with_strength_sigma": (lambda: GaussianBlur().with_strength(INF), "sigma", "inf"),
    "with_strength_rate": (lambda: TokenDrop().with_strength(NAN), "rate", "nan"),
    "with_strength_per_key": (lambda: PGD().with_strength({"fg": INF}), "eps", "inf"),
    "with_strength_per_sample": (
        lambda: GaussianNoise().with_strength(torch.tensor([0.1, NAN])),
        "std",
        "nan",
    ),
    "sweep_strengths": (lambda: Sweep("s", FGSM(), [0.1, NAN]), "strengths", "nan"),
    "sweep_strengths_inf": (lambda: Sweep("s", GaussianBlur(), [INF]), "strengths", "inf"),
    "fgsm_sweep_call": (
        lambda: FGSM().sweep(fg_bg_model(), fg_bg_batch(), Y, [0.1, INF]),
        "eps",
        "inf",
    ),
    "base_sweep_call": (
        lambda: PGD(steps=1).sweep(fg_bg_model(), fg_bg_batch(), Y, [NAN]),
        "eps",
        "nan",
    ),
}


@pytest.mark.parametrize("make, argument, got", CASES.values(), ids=CASES.keys())
def test_non_finite_numbers_are_refused(make, argument, got):
    with pytest.raises(ValueError, match=rf"{argument}\b.* must be .*, got {got}\b") as err:
        make()
    # What was expected is said, too: a finite number, an integer, or a range.
    assert "finite" in str(err.value) or "integer" in str(err.value)


def test_finite_values_still_pass():
    FGSM(eps={"fg": 0.1, "bg": 0.0})
    PGD(eps=0.1, alpha=0.01, steps=2)
    GaussianBlur(sigma=[0.5, 2.0]).with_strength(3.0)
    GaussianNoise(snr_db=-3.0)
    TokenDrop(rate=1.0)
    Sweep("s", GaussianBlur(), [0.0, 1.0])

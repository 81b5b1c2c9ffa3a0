"""Run single-input attack libraries (torchattacks) against one modality of a FusionModel."""

from __future__ import annotations

import contextlib
import copy
import inspect
import numbers
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from modfuse._registry import register_attack
from modfuse.attacks.base import Attack, AttackContext, per_key
from modfuse.attacks.checks import check_finite, check_linf_radius, check_strength

#: torchattacks' attacks whose budget is an L-inf radius (with ``norm`` left at "Linf").
LINF_ATTACKS = frozenset(
    "FGSM BIM RFGSM PGD EOTPGD FFGSM TPGD MIFGSM UPGD APGD APGDT DIFGSM TIFGSM Jitter NIFGSM "
    "PGDRS SINIFGSM VMIFGSM VNIFGSM SPSA PIFGSM PIFGSMPP FAB AutoAttack Square".split()
)
#: torchattacks' one-step attacks; every other one iterates.
SINGLE_STEP = frozenset({"FGSM", "FFGSM"})


def threat_norm(name: str, kwargs: Mapping[str, Any]) -> str:
    """The norm of torchattacks' attack ``name`` built with ``kwargs``: "linf", "l2" or "none".

    Examples:
        >>> threat_norm("PGD", {}), threat_norm("PGDL2", {}), threat_norm("APGD", {"norm": "L2"})
        ('linf', 'l2', 'l2')
        >>> threat_norm("CW", {})
        'none'
    """
    if "norm" in kwargs:  # APGD, APGDT, FAB, Square, AutoAttack: "Linf" by default
        return {"Linf": "linf", "L2": "l2"}.get(kwargs["norm"], "none")
    if name.endswith("L2"):
        return "l2"
    return "linf" if name in LINF_ATTACKS else "none"


@contextlib.contextmanager
def seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """torch's global RNG (CPU, and the CUDA device of ``device``) seeded for the block, then
    put back: torchattacks draws its random starts from it, not from a generator we pass."""
    if seed is None:
        yield
        return
    cuda = device.type == "cuda"
    with torch.random.fork_rng(devices=[device.index or 0] if cuda else []):
        torch.default_generator.manual_seed(seed)
        if cuda:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        yield


class SingleInput(nn.Module):
    """A multi-input model seen as a one-tensor model: the other inputs are held fixed.

    Every call recomputes the whole model, as a single-input library expects. With ``mask``
    (a region), the pixels outside it are taken from ``clean``: the library's gradient is zero
    there, so its steps are spent inside the region.
    """

    def __init__(
        self,
        model: nn.Module,
        others: Mapping[str, torch.Tensor],
        key: str,
        clean: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.others = dict(others)
        self.key = key
        self.clean, self.mask = clean, mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mask is not None:
            if self.clean is None:
                raise ValueError("SingleInput with a mask needs the clean input to fill outside it")
            x = torch.where(self.mask, x, self.clean)
        return self.model({**self.others, self.key: x})


@register_attack("torchattacks")
class TorchAttacksAdapter(Attack):
    """Any torchattacks attack, on one named modality of a multi-input model.

    torchattacks is optional (``pip install torchattacks``); it takes images in [0, 1].

    Args:
        attack: A torchattacks class or its name (``"PGD"``, ``"CW"``, ``"AutoAttack"``...).
        target: The one input key to attack.
        targeted: Move towards ``labels`` (the target classes), with torchattacks'
            ``set_mode_targeted_by_label``.
        seed: Seeds torch's global RNG for the call (torchattacks draws from it; it is put
            back afterwards), and is passed on to attacks that take a ``seed`` of their own.
        region: Mask key confining the perturbation (see :class:`Attack`): the library sees
            a model that ignores the pixels outside, so its gradient there is zero.
        model_mode: See :class:`Attack`; torchattacks itself runs the model in eval mode
            unless told otherwise, and every submodule's mode is restored afterwards.
        **kwargs: The torchattacks attack's own arguments (``eps``, ``steps``...). With
            ``eps`` among them, the attack sweeps it (``strength_param = "eps"``).

    Metadata: ``norm`` and ``strength_unit`` are "linf" for torchattacks' L-inf attacks (or
    ``norm="Linf"``), "l2" for ``...L2`` attacks (or ``norm="L2"``), "none" otherwise;
    ``iterative`` unless the attack is FGSM or FFGSM.

    Examples:
        >>> import torch
        >>> from modfuse import FusionModel
        >>> model = FusionModel({"fg": "small_cnn", "bg": "small_cnn"}, num_classes=3)
        >>> x = {"fg": torch.rand(2, 3, 16, 16), "bg": torch.rand(2, 3, 16, 16)}
        >>> attack = TorchAttacksAdapter("FGSM", target="fg", eps=4 / 255)
        >>> adv = attack(model, x, torch.tensor([0, 1]))
        >>> adv["bg"] is x["bg"], float((adv["fg"] - x["fg"]).abs().max()) <= 4 / 255 + 1e-6
        (True, True)
        >>> attack.norm, attack.iterative, attack.with_strength(0.1).kwargs["eps"]
        ('linf', False, 0.1)
    """

    uses_gradients = True

    def __init__(
        self,
        attack: str | type,
        target: str = "fg",
        *,
        targeted: bool = False,
        seed: int | None = None,
        region: str | None = None,
        model_mode: str = "eval",
        **kwargs: Any,
    ) -> None:
        super().__init__(
            (target,),
            ranges={target: (0.0, 1.0)},
            targeted=targeted,
            seed=seed,
            region=region,
            model_mode=model_mode,
        )
        for name, value in kwargs.items():
            # torchattacks takes its numbers unchecked: a NaN eps would give NaN images.
            if isinstance(value, numbers.Real) and not isinstance(value, bool):
                check_finite(value, name)
        self.attack = attack
        self.kwargs = kwargs
        name = attack if isinstance(attack, str) else attack.__name__
        self.norm = self.strength_unit = threat_norm(name, kwargs)
        self.iterative = name not in SINGLE_STEP
        self.strength_param = "eps" if "eps" in kwargs else None
        if "eps" in kwargs:
            self._eps(kwargs["eps"])  # torchattacks takes any number: 8 meant as 8/255 runs

    def check_strength_value(self, value: Any) -> None:
        """Raise unless ``value`` is one eps (a number, or ``{target: number}``) >= 0; an
        L-inf one at most 1 (torchattacks takes [0, 1] images)."""
        self._eps(value)

    def _eps(self, value: Any) -> float:
        """``value`` as the one float torchattacks takes, checked."""
        if isinstance(value, Mapping):
            value = per_key(value, self.targets[0], "eps")
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"torchattacks takes eps as one number, got {type(value).__name__}")
        check_strength(value, "eps")
        if self.strength_unit == "linf":
            check_linf_radius(value, "eps", self.ranges)
        return float(value)

    def with_strength(self, value: Any) -> TorchAttacksAdapter:
        """A copy whose torchattacks ``eps`` is ``value``; its kwargs are its own dict."""
        if self.strength_param is None:
            raise TypeError(
                f"{type(self).__name__}({self.attack!r}) has no strength to sweep: "
                f"pass eps=... among its arguments; got {sorted(self.kwargs)}"
            )
        other = copy.copy(self)
        other.kwargs = {**self.kwargs, "eps": self._eps(value)}
        return other

    def _attack_class(self) -> type:
        if not isinstance(self.attack, str):
            return self.attack
        try:
            import torchattacks
        except ImportError as err:
            raise ImportError(
                "TorchAttacksAdapter needs torchattacks: pip install torchattacks"
            ) from err
        found = vars(torchattacks).get(self.attack)
        if found is None:
            raise KeyError(f"torchattacks has no attack {self.attack!r}")
        return found

    def perturb(self, ctx: AttackContext, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        key = self.targets[0]
        wrapper = SingleInput(ctx.model, ctx.rest, key, ctx.inputs[key], ctx.masks.get(key))
        # A fresh module is in training mode: torchattacks would then call model.train() when
        # it finishes. Set the flag alone (train() would recurse into every submodule).
        wrapper.training = ctx.model.training
        cls = self._attack_class()
        kwargs = dict(self.kwargs)
        if self.seed is not None and "seed" in inspect.signature(cls).parameters:
            kwargs.setdefault("seed", self.seed)
        atk = cls(wrapper, **kwargs)
        if self.targeted:
            atk.set_mode_targeted_by_label(quiet=True)
        # enable_grad: torchattacks takes gradients itself, and would fail under a caller's
        # no_grad, where modfuse's own attacks work.
        with seeded(self.seed, x[key].device), torch.enable_grad():
            return {key: atk(x[key], ctx.labels)}

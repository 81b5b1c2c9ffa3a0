"""Attacks and perturbations on named modalities: ``attack(model, inputs, labels) -> inputs'``.

Two threat models: perturb one modality's input (``targets=("fg",)``, arXiv 2011.09526's), or
the raw image in front of :class:`modfuse.ContextViews` (``targets=("image",)``), where both
the foreground and the background views move.
"""

from modfuse.attacks.adapters import TorchAttacksAdapter
from modfuse.attacks.apgd import APGD, dlr_loss
from modfuse.attacks.base import Attack, AttackContext
from modfuse.attacks.blur import GaussianBlur, gaussian_blur
from modfuse.attacks.drop import DropModality
from modfuse.attacks.ensemble import Ensemble
from modfuse.attacks.fgsm import FGSM
from modfuse.attacks.noise import GaussianNoise
from modfuse.attacks.pgd import PGD
from modfuse.attacks.square import Square
from modfuse.attacks.text import EmbeddingPGD, TokenDrop, TokenSubstitution

__all__ = [
    "APGD",
    "FGSM",
    "PGD",
    "Attack",
    "AttackContext",
    "DropModality",
    "EmbeddingPGD",
    "Ensemble",
    "GaussianBlur",
    "GaussianNoise",
    "Square",
    "TokenDrop",
    "TokenSubstitution",
    "TorchAttacksAdapter",
    "dlr_loss",
    "gaussian_blur",
]

"""Attacks and perturbations on named modalities: ``attack(model, inputs, labels) -> inputs'``.

Two threat models: perturb one modality's input (``targets=("fg",)``, arXiv 2011.09526's), or
the raw image in front of :class:`modfuse.ContextViews` (``targets=("image",)``), where both
the foreground and the background views move.
"""

from modfuse.attacks.adapters import TorchAttacksAdapter
from modfuse.attacks.base import Attack, AttackContext
from modfuse.attacks.blur import GaussianBlur, gaussian_blur
from modfuse.attacks.drop import DropModality
from modfuse.attacks.fgsm import FGSM
from modfuse.attacks.noise import GaussianNoise
from modfuse.attacks.pgd import PGD
from modfuse.attacks.text import EmbeddingPGD, TokenDrop, TokenSubstitution

__all__ = [
    "FGSM",
    "PGD",
    "Attack",
    "AttackContext",
    "DropModality",
    "EmbeddingPGD",
    "GaussianBlur",
    "GaussianNoise",
    "TokenDrop",
    "TokenSubstitution",
    "TorchAttacksAdapter",
    "gaussian_blur",
]

"""Regularizers: ``reg(model, batch, outputs) -> scalar`` added to the training loss."""

from modfuse.regularizers.base import LossTerm, Regularizer, as_regularizer
from modfuse.regularizers.consistency import ConsistencyRegularizer
from modfuse.regularizers.modality_dropout import ModalityDropout
from modfuse.regularizers.modality_penalty import ModalityWeightPenalty

__all__ = [
    "ConsistencyRegularizer",
    "LossTerm",
    "ModalityDropout",
    "ModalityWeightPenalty",
    "Regularizer",
    "as_regularizer",
]

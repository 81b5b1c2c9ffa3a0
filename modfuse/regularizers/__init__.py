"""Regularizers: ``reg(model, batch, outputs) -> scalar`` added to the training loss."""

from modfuse.regularizers.base import Regularizer
from modfuse.regularizers.consistency import ConsistencyRegularizer
from modfuse.regularizers.modality_dropout import ModalityDropout
from modfuse.regularizers.modality_penalty import ModalityWeightPenalty

__all__ = ["ConsistencyRegularizer", "ModalityDropout", "ModalityWeightPenalty", "Regularizer"]

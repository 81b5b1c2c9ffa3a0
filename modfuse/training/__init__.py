"""Training a fusion model: the loop, its loss, the checks before it starts, its state.

- :mod:`~modfuse.training.trainer`: :class:`Trainer`, the loop read top to bottom;
- :mod:`~modfuse.training.loss`: one step's loss (task loss + regularizers) and accuracy;
- :mod:`~modfuse.training.setup`: what is checked and placed before the first step;
- :mod:`~modfuse.training.state`: :class:`TrainState`, the resumable state of a run.
"""

from modfuse.training.loss import TrainLoss, TrainStep
from modfuse.training.state import TrainState
from modfuse.training.trainer import NonFiniteLossError, Trainer, history_table

__all__ = ["NonFiniteLossError", "TrainLoss", "TrainState", "TrainStep", "Trainer", "history_table"]

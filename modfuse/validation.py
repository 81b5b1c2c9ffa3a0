"""Input checks shared by the model, the attacks and the loops: one place says what a valid
batch is, and one switch turns the model's per-call checks off for a block of code.

Attacks call a model many times on inputs they derived from inputs checked once; they run
those calls inside :func:`unchecked`, which skips the per-call checks in this thread only and
never changes the caller's model.

Examples:
    >>> import torch
    >>> labels_of({"fg": torch.zeros(2, 3), "label": [1, 0]}).tolist()
    [1, 0]
    >>> with unchecked():
    ...     checks_on(True)
    False
    >>> checks_on(True)
    True
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch

_SKIP = contextvars.ContextVar("modfuse_skip_input_checks", default=False)
#: dtypes whose finiteness is first tested on their sum, and the dtype of that sum (float32
#: for the half types, whose own range overflows at 65504).
_SUMMED = {
    torch.float16: torch.float32,
    torch.bfloat16: torch.float32,
    torch.float32: torch.float32,
    torch.float64: torch.float64,
}


@contextmanager
def unchecked() -> Iterator[None]:
    """Skip models' per-call input checks inside the block (this thread or task only)."""
    token = _SKIP.set(True)
    try:
        yield
    finally:
        _SKIP.reset(token)


def checks_on(wanted: bool) -> bool:
    """Whether a model whose own setting is ``wanted`` checks its inputs here and now."""
    return wanted and not _SKIP.get()


def labels_of(batch: Mapping[str, Any]) -> torch.Tensor:
    """The ``label`` entry of a dataset batch as a tensor (as the loader collated it).

    Raises:
        KeyError: the batch has no ``label``.
    """
    if "label" not in batch:
        raise KeyError(f"the batch has no 'label'; it has {sorted(batch)}")
    return torch.as_tensor(batch["label"])


def check_finite(name: str, x: torch.Tensor, what: str = "modality") -> None:
    """Raise unless the floating-point tensor ``x`` (``what`` ``name``) holds only finite
    values."""
    if not x.is_floating_point() or x.numel() == 0:
        return
    # A NaN or inf anywhere makes the sum NaN or inf: one reduction (about 1/20 of the time
    # of isfinite().all() on a 128 x 3 x 48 x 48 batch). A finite sum proves every value
    # finite; a non-finite one (which also comes from overflow of large finite values, in
    # float16 most of all) is settled by the exact element-wise test.
    if x.dtype in _SUMMED and bool(torch.isfinite(x.sum(dtype=_SUMMED[x.dtype]))):
        return
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{what} {name!r} holds {bad} NaN or inf values; inputs must be finite")


def check_shapes(
    inputs: Mapping[str, Any], shapes: Mapping[str, tuple[int | None, ...] | None]
) -> None:
    """Raise unless every input is a finite tensor of its declared per-sample shape
    (``shapes[key]``, None entries free; None as a whole: any shape), all with one batch size."""
    batch: tuple[str, int] | None = None
    for m, x in inputs.items():
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"modality {m!r} must be a Tensor, got {type(x).__name__}")
        shape = shapes.get(m)
        if shape is not None and not _fits(x, shape):
            want = ", ".join(["B"] + [str(s or "*") for s in shape])
            raise ValueError(f"modality {m!r} must have shape ({want}), got {tuple(x.shape)}")
        if batch is not None and x.shape[0] != batch[1]:
            raise ValueError(
                f"batch sizes differ: {m!r} has {x.shape[0]}, {batch[0]!r} has {batch[1]}"
            )
        batch = (m, x.shape[0])
        check_finite(m, x)


def check_dtype(name: str, x: torch.Tensor, wanted: torch.dtype | None) -> None:
    """Raise unless ``x`` (modality ``name``) has the floating dtype ``wanted`` of its
    encoder's weights (None: the encoder has no floating weights, anything goes).

    Examples:
        >>> check_dtype("fg", torch.zeros(1, dtype=torch.uint8), torch.float32)
        Traceback (most recent call last):
        ...
        TypeError: modality 'fg' is a torch.uint8 tensor; its encoder takes torch.float32 ...
    """
    if wanted is None or x.dtype == wanted:
        return
    if not x.is_floating_point():
        raise TypeError(
            f"modality {name!r} is a {x.dtype} tensor; its encoder takes {wanted} (images as "
            "[0, 1] pixels: x.float() / 255 for 8-bit images)"
        )
    raise TypeError(
        f"modality {name!r} is a {x.dtype} tensor; its encoder's weights are {wanted}: cast the "
        f"input (x.to({wanted})) or the model (model.to({x.dtype}))"
    )


def _fits(x: torch.Tensor, shape: Sequence[int | None]) -> bool:
    same = all(s is None or s == d for s, d in zip(shape, x.shape[1:]))
    return x.dim() == len(shape) + 1 and same


def check_labels(labels: Any, num_classes: int) -> None:
    """Raise unless ``labels`` is a 1-D integer tensor of class indices in ``[0, num_classes)``."""
    if not torch.is_tensor(labels) or labels.is_floating_point() or labels.dim() != 1:
        shape = tuple(labels.shape) if torch.is_tensor(labels) else type(labels).__name__
        dtype = labels.dtype if torch.is_tensor(labels) else ""
        raise ValueError(f"labels must be a 1-D integer tensor, got {dtype} {shape}")
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes}) for this model, got "
            f"[{int(labels.min())}, {int(labels.max())}]"
        )

"""Where work happens: the model's parameters say so, and one function moves every batch there.

Every loop of the library (training, validation, robustness sweeps, feature shift, modality
reliance, the feature cache, the sanity probes, attacks) calls :func:`to_model` on each batch,
so a model on a GPU gets GPU batches and nothing assumes the CPU. The same call casts floating
inputs to the model's floating dtype: a float64 (or float16) model gets float64 (float16)
inputs, and a test that runs every loop with a float64 model fails wherever a loop forgot the
move, exactly where a GPU run would fail with a device mismatch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn


def _tensors(model: nn.Module) -> Iterator[torch.Tensor]:
    yield from model.parameters()
    yield from model.buffers()


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (or buffer); the CPU for a model with none.

    Examples:
        >>> model_device(nn.Linear(2, 2))
        device(type='cpu')
    """
    first = next(_tensors(model), None)
    return first.device if first is not None else torch.device("cpu")


def model_dtype(model: nn.Module) -> torch.dtype | None:
    """The dtype of the model's first floating parameter (or buffer); None if it has none.

    Examples:
        >>> model_dtype(nn.Linear(2, 2).double())
        torch.float64
    """
    return next((t.dtype for t in _tensors(model) if t.is_floating_point()), None)


def to_model(
    batch: Mapping[str, Any], model: nn.Module, channels_last: bool = False
) -> dict[str, Any]:
    """A batch's tensors on the model's device, floating ones in the model's dtype.

    Integer tensors (labels, token ids, masks stored as integers) keep their dtype; anything
    that is not a tensor (ids, file names) passes through. A tensor already in place is
    returned as the very same object, so untouched inputs stay bit-identical.

    Args:
        batch: A dict batch (dataset samples collated, or a model's inputs).
        model: The model the batch is for.
        channels_last: Put 4-D tensors in channels-last memory (faster CNNs on recent hardware).

    Examples:
        >>> model = nn.Linear(3, 2).double()
        >>> out = to_model({"x": torch.zeros(4, 3), "label": torch.ones(4, dtype=torch.long),
        ...                 "id": ["a", "b", "c", "d"]}, model)
        >>> out["x"].dtype, out["label"].dtype, out["id"][0]
        (torch.float64, torch.int64, 'a')
    """
    device, dtype = model_device(model), model_dtype(model)
    out: dict[str, Any] = {}
    for key, value in batch.items():
        if torch.is_tensor(value):
            cast = dtype if value.is_floating_point() and dtype is not None else None
            value = value.to(device=device, dtype=cast, non_blocking=True)
            if channels_last and value.dim() == 4:
                value = value.contiguous(memory_format=torch.channels_last)
        out[key] = value
    return out


def autocast(model: nn.Module, enabled: bool) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on the model's device type when ``enabled``; a no-op otherwise.

    Examples:
        >>> with autocast(nn.Linear(2, 2), enabled=False):
        ...     pass
    """
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=model_device(model).type, dtype=torch.bfloat16)


def check_device(device: str) -> str:
    """``device`` if torch can parse it (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``).

    Raises:
        ValueError: torch does not know the device string.
    """
    try:
        torch.device(device)
    except RuntimeError as err:
        raise ValueError(
            f"device {device!r} is not a torch device; expected e.g. 'cpu', 'cuda', 'cuda:1'"
        ) from err
    return device


def check_device_available(device: str) -> str:
    """``device`` if this machine has it: a CUDA index below the GPU count, MPS where built.

    Raises:
        ValueError: one paragraph naming the device asked for and what this machine has.
    """
    parsed = torch.device(check_device(device))
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = parsed.index or 0
        if index >= count:
            have = f"{count} CUDA device(s) (cuda:0 to cuda:{count - 1})" if count else "no GPU"
            raise ValueError(
                f"device {device!r} was asked for, but this machine has {have}; give --device "
                "cpu (or another device) or leave device unset to use what is there"
            )
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(
            f"device {device!r} was asked for, but MPS is not available on this machine; give "
            "--device cpu or leave device unset"
        )
    return device

"""Random numbers per item: each item of a batch draws from a generator of its own.

An attack's result on an item must not depend on which other items share its batch, nor on
the batch size: the worst case (:class:`~modfuse.attacks.ensemble.Ensemble`) runs each member
only on the items that no earlier member broke, and counts an item as robust only if that
member's result on it is the one the member gives alone. One generator per batch breaks
this: an item's random start would then depend on how many items were drawn before it.

The attack has no dataset index, so an item is known by its content: its generator is seeded
by a hash (BLAKE2b) of the attack's seed, the attack's name (its class name: the member), the
bytes of each of the item's input tensors (every tensor input whose first dimension is the
batch, in sorted key order, with its key, dtype and shape) and its label. Two items with the
same tensors and label draw the same numbers; an item draws the same numbers whatever batch it
is in. Each draw of :class:`ItemStreams` takes the same amount from every item's generator,
so that what an item draws next never depends on the other items either.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence

import torch

#: Names how items' random numbers are drawn: a key of cached perturbations that holds it
#: (with the attack's settings) never serves results drawn another way.
DRAW_SCHEME = "item-streams-1"


def _row_bytes(t: torch.Tensor) -> torch.Tensor:
    """``t`` (B, ...) as one row of raw bytes per item: (B, N) uint8, on the CPU."""
    flat = t.detach().to("cpu").contiguous().reshape(t.shape[0], math.prod(t.shape[1:]))
    if flat.dtype == torch.bool:
        return flat.to(torch.uint8)
    return flat.view(torch.uint8)  # (B, prod(...) * itemsize)


def item_seeds(
    seed: int, name: str, tensors: Mapping[str, object], labels: torch.Tensor | None
) -> list[int]:
    """One 63-bit seed per item, from the attack's seed and name and the item's own content.

    Args:
        seed: The attack's seed.
        name: What tells members apart (the attack's class name).
        tensors: The call's inputs; every tensor whose first dimension is the batch size
            (that of ``labels``, else of the first such tensor) is hashed, row by row.
        labels: The labels ``(B,)`` (the target classes of a targeted attack), or None.

    Returns:
        ``B`` seeds; item ``i``'s depends only on ``seed``, ``name`` and row ``i``.

    Examples:
        >>> x = {"fg": torch.tensor([[0.0, 1.0], [2.0, 3.0]])}
        >>> a = item_seeds(0, "PGD", x, torch.tensor([0, 1]))
        >>> b = item_seeds(0, "PGD", {"fg": x["fg"][1:]}, torch.tensor([1]))
        >>> a[1] == b[0], a[0] != a[1], a != item_seeds(1, "PGD", x, torch.tensor([0, 1]))
        (True, True, True)
    """
    rows = {k: v for k, v in tensors.items() if torch.is_tensor(v) and v.dim() >= 1}
    if labels is not None:
        batch = labels.shape[0]
    elif rows:
        batch = next(iter(rows.values())).shape[0]
    else:
        return []
    base = hashlib.blake2b(digest_size=8)
    base.update(f"{DRAW_SCHEME}\0{int(seed)}\0{name}\0".encode())
    hashes = [base.copy() for _ in range(batch)]
    parts = [(k, rows[k]) for k in sorted(rows) if rows[k].shape[0] == batch]
    if labels is not None:
        parts.append(("\0labels", labels))
    for key, t in parts:
        head = f"{key}\0{t.dtype}\0{tuple(t.shape[1:])}\0".encode()
        data = _row_bytes(t).numpy()
        for i, h in enumerate(hashes):
            h.update(head)
            h.update(data[i])
    return [int.from_bytes(h.digest(), "little") >> 1 for h in hashes]


class ItemStreams:
    """One ``torch.Generator`` per item; each draw gives every item its own ``(B, *shape)`` row.

    Draws are made on the CPU (as a seeded ``torch.Generator`` is) in the dtype asked for;
    callers move them to the inputs' device.

    Args:
        seeds: One seed per item (:func:`item_seeds`).

    Examples:
        >>> s = ItemStreams([5, 7])
        >>> u = s.rand((3,))
        >>> u.shape, torch.equal(u[1], ItemStreams([7]).rand((3,))[0])
        (torch.Size([2, 3]), True)
    """

    def __init__(self, seeds: Sequence[int]) -> None:
        self.seeds = list(seeds)
        self.generators = [torch.Generator().manual_seed(s) for s in self.seeds]

    @classmethod
    def of(
        cls, seed: int, name: str, tensors: Mapping[str, object], labels: torch.Tensor | None
    ) -> ItemStreams:
        """Streams of the items of a call (see :func:`item_seeds` for what seeds each)."""
        return cls(item_seeds(seed, name, tensors, labels))

    def __len__(self) -> int:
        return len(self.generators)

    def _stack(self, draws: list[torch.Tensor], shape: tuple, dtype: torch.dtype) -> torch.Tensor:
        return torch.stack(draws) if draws else torch.empty((0, *shape), dtype=dtype)

    def rand(self, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Uniform numbers in [0, 1): ``(B, *shape)``, row ``i`` from item ``i``'s generator."""
        shape = tuple(shape)
        draws = [torch.rand(shape, generator=g, dtype=dtype) for g in self.generators]
        return self._stack(draws, shape, dtype)

    def randn(self, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Standard normal numbers: ``(B, *shape)``, row ``i`` from item ``i``'s generator."""
        shape = tuple(shape)
        draws = [torch.randn(shape, generator=g, dtype=dtype) for g in self.generators]
        return self._stack(draws, shape, dtype)

    def randint(self, low: int, high: int, shape: Sequence[int]) -> torch.Tensor:
        """Integers in ``[low, high)`` (int64): ``(B, *shape)``, one row per item."""
        shape = tuple(shape)
        draws = [torch.randint(low, high, shape, generator=g) for g in self.generators]
        return self._stack(draws, shape, torch.int64)

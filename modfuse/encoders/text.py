"""Text encoder: token ids -> embedding -> 1-D convolutions -> max over time; a tiny tokenizer."""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from modfuse._registry import register_encoder
from modfuse.encoders.base import FreezableEncoder

PAD, UNK = 0, 1


class SimpleTokenizer:
    """Lower-case word tokenizer with a vocabulary built from texts (for tests and examples).

    Id 0 is padding, 1 is unknown. Any callable ``texts -> LongTensor (B, L)`` can take its
    place, e.g. a Hugging Face tokenizer loaded from a local folder.

    Examples:
        >>> tok = SimpleTokenizer.fit(["a red ball", "a blue box"])
        >>> tok(["a red box", "green"], max_len=4).tolist()
        [[2, 3, 6, 0], [1, 0, 0, 0]]
    """

    def __init__(self, vocab: Sequence[str]) -> None:
        self.vocab = ["<pad>", "<unk>", *[w for w in vocab if w not in ("<pad>", "<unk>")]]
        self.index = {w: i for i, w in enumerate(self.vocab)}

    @staticmethod
    def words(text: str) -> list[str]:
        return re.findall(r"[a-z0-9']+", text.lower())

    @classmethod
    def fit(cls, texts: Iterable[str], max_vocab: int | None = None) -> SimpleTokenizer:
        texts = list(texts)
        counts = Counter(w for t in texts for w in cls.words(t))
        # Keep the most frequent words; number them in order of first appearance.
        kept = sorted(counts, key=lambda w: (-counts[w], w))[:max_vocab]
        return cls(_first_seen(texts, kept))

    def __len__(self) -> int:
        return len(self.vocab)

    def __call__(self, texts: Sequence[str], max_len: int = 32) -> torch.Tensor:
        out = torch.full((len(texts), max_len), PAD, dtype=torch.long)
        for i, t in enumerate(texts):
            ids = [self.index.get(w, UNK) for w in self.words(t)][:max_len]
            out[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out


def _first_seen(texts: Iterable[str], keep: Sequence[str]) -> list[str]:
    keep_set, seen = set(keep), []
    for t in texts:
        for w in SimpleTokenizer.words(t):
            if w in keep_set and w not in seen:
                seen.append(w)
    return seen


@register_encoder("text_cnn")
class TextCNN(FreezableEncoder):
    """Kim-style text CNN (arXiv 1408.5882): embeddings, parallel 1-D convolutions, max-pool.

    Takes token ids ``(B, L)`` or, for attacks in embedding space, embeddings ``(B, L, E)``
    (see :class:`modfuse.attacks.EmbeddingPGD`).

    Args:
        vocab_size: Number of token ids (id 0 is padding).
        embed_dim: Embedding size.
        width: Channels per kernel size.
        kernel_sizes: Widths of the 1-D convolutions.
        weights: A safetensors / ``.pth`` file of this encoder's state, or None.
        freeze: No gradients, eval mode kept.

    Shape:
        - Input: ``(B, L)`` int64 ids, or ``(B, L, embed_dim)`` float embeddings
        - Output: ``(B, width * len(kernel_sizes))``

    Examples:
        >>> enc = TextCNN(vocab_size=50, embed_dim=8, width=4)
        >>> enc(torch.randint(0, 50, (2, 12))).shape
        torch.Size([2, 12])
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int = 32,
        width: int = 32,
        kernel_sizes: Sequence[int] = (3, 4, 5),
        weights: str | os.PathLike | None = None,
        freeze: bool = False,
    ) -> None:
        super().__init__()
        if vocab_size < 2 or embed_dim < 1 or width < 1 or not kernel_sizes:
            raise ValueError(
                f"need vocab_size >= 2, embed_dim, width >= 1 and kernel sizes, got "
                f"{vocab_size}, {embed_dim}, {width}, {list(kernel_sizes)}"
            )
        self.vocab_size, self.embed_dim = vocab_size, embed_dim
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD)
        self.convs = nn.ModuleList(nn.Conv1d(embed_dim, width, k) for k in kernel_sizes)
        self.min_len = max(kernel_sizes)
        self.out_dim = width * len(kernel_sizes)
        self.input_shape = None  # ids (B, L) or embeddings (B, L, E): checked in forward
        self.finish(weights, freeze)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids ``(B, L)`` -> embeddings ``(B, L, E)``."""
        if ids.dtype != torch.long or ids.dim() != 2:
            raise ValueError(f"token ids must be int64 (B, L), got {ids.dtype} {tuple(ids.shape)}")
        if ids.numel() and (ids.min() < 0 or ids.max() >= self.vocab_size):
            lo, hi = int(ids.min()), int(ids.max())
            raise ValueError(f"token ids must lie in [0, {self.vocab_size}), got [{lo}, {hi}]")
        return self.embedding(ids)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        emb = self.embed(x) if not x.is_floating_point() else x
        if emb.dim() != 3 or emb.shape[-1] != self.embed_dim:
            raise ValueError(
                f"text input must be ids (B, L) or embeddings (B, L, {self.embed_dim}), "
                f"got {tuple(x.shape)}"
            )
        if emb.shape[1] < self.min_len:
            raise ValueError(f"sequences need at least {self.min_len} tokens, got {emb.shape[1]}")
        h = emb.transpose(1, 2)  # (B, E, L) for Conv1d
        return torch.cat([torch.relu(conv(h)).amax(dim=2) for conv in self.convs], dim=1)

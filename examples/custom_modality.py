"""Extend modfuse from your own module: a new encoder, a new fusion, three modalities.

This file is the "user-side module": it registers an encoder (``gradient_energy``) and a
fusion layer (``weighted_mean``) with the public decorators, then builds an image + audio +
text model by their names, trains it on a synthetic task where each modality carries part of
the answer, and reports how much the model relies on each modality and its accuracy when each
one is attacked, corrupted or missing.

The task: 4 classes, ``y = 2a + b``. The image shows faint, noisy stripes whose orientation
is ``a``; the audio is a clear tone whose pitch is ``b``; the text names the class, but only
70% of the time. No single modality is enough; the report shows which ones the model leans on.

Run:  python examples/custom_modality.py [--quick] [--out runs/custom_modality]
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from modfuse import FusionModel, register_encoder, register_fusion
from modfuse.attacks import FGSM, DropModality, GaussianNoise, TokenSubstitution
from modfuse.data import StackedDataset
from modfuse.encoders import SimpleTokenizer
from modfuse.fusion.base import Fusion
from modfuse.reporting.report import accuracy_tables, write_report
from modfuse.robustness import Sweep, modality_reliance, robustness_sweep
from modfuse.training.trainer import Trainer

WORDS = ["alpha", "bravo", "charlie", "delta"]
FILLER = "the a one of some this that thing sound picture".split()
SAMPLE_RATE = 8000


# ----------------------------------------------------------------------------- user components
def _register() -> None:
    """Register this module's components; importing the module again re-registers the same
    definitions, which the registry takes as a no-op."""
    register_encoder("gradient_energy")(GradientEnergy)
    register_fusion("weighted_mean")(WeightedMeanFusion)


class GradientEnergy(nn.Module):
    """Image -> mean energy of horizontal and vertical differences per channel -> MLP.

    A hand-made encoder: stripes show up as energy in one direction only.
    """

    def __init__(self, in_channels: int = 3, hidden: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(2 * in_channels, hidden), nn.ReLU(), nn.Linear(hidden, hidden)
        )
        self.out_dim = hidden
        self.input_shape = (in_channels, None, None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dx = (x[..., :, 1:] - x[..., :, :-1]).pow(2).mean(dim=(2, 3))  # (B, C)
        dy = (x[..., 1:, :] - x[..., :-1, :]).pow(2).mean(dim=(2, 3))  # (B, C)
        return self.net(torch.log(torch.cat([dx, dy], dim=1) + 1e-4))


class WeightedMeanFusion(Fusion):
    """Project each modality to ``out_dim``; average them with learned softmax weights."""

    def __init__(self, in_dims: Mapping[str, int], out_dim: int) -> None:
        super().__init__(in_dims, out_dim)
        for m, d in self.in_dims.items():
            self.branches[m] = nn.Linear(d, out_dim)
        self.logit_weights = nn.Parameter(torch.zeros(len(self.modalities)))

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        xs = self.ordered(features)
        stacked = torch.stack([self.branches[m](x) for m, x in zip(self.modalities, xs)], 1)
        w = self.logit_weights.softmax(0).view(1, -1, 1)  # (1, M, 1)
        return (w * torch.relu(stacked)).sum(1) * len(self.modalities)


_register()


# ----------------------------------------------------------------------------- the task
def make_data(n: int, seed: int, tokenizer: SimpleTokenizer | None = None):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    a, b = y // 2, y % 2
    # Image: stripes, horizontal (a=0) or vertical (a=1), random phase, colour and noise.
    side = 24
    coords = torch.arange(side).float()
    phase = torch.rand(n, 1, 1, generator=g) * 2 * math.pi
    period = 3 + 3 * torch.rand(n, 1, 1, generator=g)
    along = torch.where(a.view(-1, 1, 1) == 0, coords.view(1, -1, 1), coords.view(1, 1, -1))
    stripes = 0.5 + 0.5 * torch.sin(2 * math.pi * along / period + phase)  # (n, side, side)
    colour = torch.rand(n, 3, 1, 1, generator=g)
    # Faint stripes under strong noise: the image tells ``a`` less reliably than audio tells ``b``.
    contrast = 0.05 + 0.3 * torch.rand(n, 1, 1, 1, generator=g)
    noise = 0.3 * torch.randn(n, 3, side, side, generator=g)
    image = (0.5 + contrast * (stripes.unsqueeze(1) - 0.5) * colour + noise).clamp(0, 1)
    # Audio: a tone at 500 Hz (b=0) or 1500 Hz (b=1), random amplitude, noise.
    t = torch.arange(2000).float() / SAMPLE_RATE
    freq = torch.where(b == 0, 500.0, 1500.0).view(-1, 1) * (
        1 + 0.05 * torch.randn(n, 1, generator=g)
    )
    amp = 0.2 + 0.3 * torch.rand(n, 1, generator=g)
    audio = amp * torch.sin(2 * math.pi * freq * t) + 0.05 * torch.randn(n, 2000, generator=g)
    # Text: four filler words and the class word (a random class word 30% of the time).
    said = torch.where(torch.rand(n, generator=g) < 0.7, y, torch.randint(0, 4, (n,), generator=g))
    texts = []
    for i in range(n):
        words = [FILLER[int(j)] for j in torch.randint(0, len(FILLER), (4,), generator=g)]
        words.insert(int(torch.randint(0, 5, (1,), generator=g)), WORDS[int(said[i])])
        texts.append(" ".join(words))
    tokenizer = tokenizer or SimpleTokenizer.fit(texts + WORDS + FILLER)
    data = StackedDataset({"image": image, "audio": audio, "text": tokenizer(texts, max_len=8)}, y)
    return data, tokenizer


def study_data(n_train: int = 3000, n_test: int = 1000, seed: int = 0):
    """``(train, test)`` for ``examples/studies/custom_modality.yaml``: the test set is drawn
    with the next seed and the training set's tokenizer (16 tokens: the words never change)."""
    train, tokenizer = make_data(n_train, seed)
    test, _ = make_data(n_test, seed + 1, tokenizer)
    return train, test


def build_model(vocab_size: int) -> FusionModel:
    return FusionModel(
        {
            "image": {"name": "gradient_energy"},
            "audio": {
                "name": "audio_cnn",
                "sample_rate": SAMPLE_RATE,
                "n_fft": 256,
                "hop_length": 128,
                "n_mels": 24,
                "width": 8,
                "depth": 2,
            },
            "text": {"name": "text_cnn", "vocab_size": vocab_size, "embed_dim": 16, "width": 16},
        },
        "weighted_mean",
        num_classes=4,
        fusion_dim=32,
        missing="learned",
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples and epochs")
    parser.add_argument("--out", default="runs/custom_modality")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    n_train, n_test, epochs = (800, 300, 6) if args.quick else (3000, 1000, 12)
    torch.manual_seed(args.seed)
    train, tokenizer = make_data(n_train, args.seed)
    test, _ = make_data(n_test, args.seed + 1, tokenizer)
    model = build_model(len(tokenizer))
    Trainer(model, epochs=epochs, lr=3e-3, modality_dropout=0.15, seed=args.seed).fit(train, test)
    out = Path(args.out)
    model.save(out / "model")
    sweeps = [
        Sweep("image_fgsm", FGSM(targets=("image",)), [4 / 255, 16 / 255]),
        Sweep("audio_noise", GaussianNoise(targets=("audio",), seed=0), [0.2, 1.0]),
        Sweep("text_substitution", TokenSubstitution(targets=("text",), seed=0), [0.3, 0.7]),
    ] + [Sweep(f"drop_{m}", DropModality(targets=(m,)), [0.0]) for m in model.modalities]
    rows = robustness_sweep({"three_modalities": model}, test, sweeps)
    reliance = modality_reliance(model, test)
    drop = {
        m: next(r["accuracy"] for r in rows if r["perturbation"] == f"drop_{m}")
        for m in model.modalities
    }
    lines = [
        "| modality | reliance (accuracy drop, mean feature) | accuracy when missing |",
        "|---|---|---|",
    ]
    lines += [
        f"| {m} | {reliance[m]['accuracy_drop']:.3f} | {drop[m]:.3f} |" for m in model.modalities
    ]
    notes = "Each modality's reliance and the accuracy when it is missing:\n\n" + "\n".join(lines)
    report = write_report(
        out / "report",
        rows,
        reliance={"three_modalities": reliance},
        title="Three modalities: image + audio + text",
        notes=notes,
    )
    print(accuracy_tables(rows))
    print("\n".join(lines))
    print(f"report: {report}")
    return {"rows": rows, "reliance": reliance, "drop": drop}


if __name__ == "__main__":
    main(sys.argv[1:])

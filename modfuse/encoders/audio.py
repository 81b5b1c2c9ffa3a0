"""Audio encoder: waveform -> log-mel spectrogram (torch ops only) -> small CNN."""

from __future__ import annotations

import math
import os

import torch

from modfuse._registry import register_encoder
from modfuse.encoders.base import FreezableEncoder
from modfuse.encoders.small_cnn import SmallCNN


def mel_filterbank(
    n_freqs: int, n_mels: int, sample_rate: int, f_min: float = 0.0, f_max: float | None = None
) -> torch.Tensor:
    """Triangular filters on the HTK mel scale: ``(n_freqs, n_mels)``.

    Examples:
        >>> fb = mel_filterbank(201, 40, 16000)
        >>> fb.shape, bool((fb.sum(0) > 0).all())
        (torch.Size([201, 40]), True)
    """
    f_max = f_max or sample_rate / 2
    mel = lambda f: 2595.0 * math.log10(1.0 + f / 700.0)  # noqa: E731
    mels = torch.linspace(mel(f_min), mel(f_max), n_mels + 2)
    hz = 700.0 * (10 ** (mels / 2595.0) - 1.0)  # (n_mels + 2,) filter edges in Hz
    freqs = torch.linspace(0, sample_rate / 2, n_freqs)  # (n_freqs,)
    lower, centre, upper = hz[:-2], hz[1:-1], hz[2:]
    up = (freqs[:, None] - lower) / (centre - lower).clamp_min(1e-6)
    down = (upper - freqs[:, None]) / (upper - centre).clamp_min(1e-6)
    return torch.clamp(torch.minimum(up, down), min=0.0)


@register_encoder("audio_cnn")
class AudioCNN(FreezableEncoder):
    """Waveform -> log-mel spectrogram -> :class:`SmallCNN` -> features.

    The spectrogram is computed with ``torch.stft`` and a mel filterbank built here, so it is
    differentiable (attacks can work on the waveform) and needs no audio library.

    Args:
        sample_rate: Samples per second of the input.
        n_fft: STFT size.
        hop_length: STFT hop.
        n_mels: Mel bands.
        width: Width of the CNN's first stage.
        depth: CNN stages.
        weights: A safetensors / ``.pth`` file of this encoder's state, or None.
        freeze: No gradients, eval mode kept.

    Shape:
        - Input: ``(B, T)`` waveform
        - Output: ``(B, out_dim)``

    Examples:
        >>> enc = AudioCNN(sample_rate=8000, n_mels=16, width=8, depth=2)
        >>> enc(torch.randn(2, 4000)).shape
        torch.Size([2, 16])
    """

    #: Buffers: the STFT window ``(n_fft,)`` and the mel filterbank ``(n_fft // 2 + 1, n_mels)``.
    window: torch.Tensor
    mel: torch.Tensor

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 400,
        hop_length: int = 160,
        n_mels: int = 40,
        width: int = 16,
        depth: int = 3,
        weights: str | os.PathLike | None = None,
        freeze: bool = False,
    ) -> None:
        super().__init__()
        if sample_rate < 1 or n_fft < 2 or hop_length < 1 or n_mels < 1:
            raise ValueError(
                f"need positive sample_rate, n_fft >= 2, hop_length and n_mels, got "
                f"{sample_rate}, {n_fft}, {hop_length}, {n_mels}"
            )
        self.sample_rate, self.n_fft, self.hop_length = sample_rate, n_fft, hop_length
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.register_buffer(
            "mel", mel_filterbank(n_fft // 2 + 1, n_mels, sample_rate), persistent=False
        )
        self.cnn = SmallCNN(in_channels=1, width=width, depth=depth)
        self.out_dim = self.cnn.out_dim
        self.input_shape: tuple[int | None, ...] = (None,)
        self.finish(weights, freeze)

    def spectrogram(self, wave: torch.Tensor) -> torch.Tensor:
        """Log-mel spectrogram ``(B, 1, n_mels, frames)`` of a waveform ``(B, T)``."""
        if wave.shape[-1] < self.n_fft:
            raise ValueError(
                f"waveforms need at least n_fft={self.n_fft} samples, got {wave.shape[-1]}"
            )
        spec = torch.stft(
            wave, self.n_fft, self.hop_length, window=self.window, return_complex=True
        )  # (B, F, frames)
        power = spec.real**2 + spec.imag**2
        mel = torch.einsum("bft,fm->bmt", power, self.mel)  # (B, n_mels, frames)
        return torch.log(mel + 1e-6).unsqueeze(1)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.cnn(self.spectrogram(wave))

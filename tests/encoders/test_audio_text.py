import math

import pytest
import torch

from modfuse.encoders import AudioCNN, SimpleTokenizer, TextCNN
from modfuse.encoders.audio import mel_filterbank


def test_spectrogram_puts_a_tone_in_the_right_band():
    enc = AudioCNN(sample_rate=8000, n_fft=256, hop_length=128, n_mels=32, width=4, depth=2)
    t = torch.arange(8000) / 8000
    low, high = torch.sin(2 * math.pi * 300 * t), torch.sin(2 * math.pi * 3000 * t)
    spec = enc.spectrogram(torch.stack([low, high]))  # (2, 1, 32, frames)
    peak = spec.mean(dim=3)[:, 0].argmax(dim=1)
    assert peak[0] < 10 < peak[1]
    feats = enc(torch.stack([low, high]))
    assert feats.shape == (2, enc.out_dim)
    wave = low[None].clone().requires_grad_(True)
    enc(wave).sum().backward()
    assert wave.grad.abs().sum() > 0  # differentiable down to the waveform


def test_filterbank_is_triangular_and_covers_the_band():
    fb = mel_filterbank(129, 20, 8000)
    assert fb.min() >= 0 and fb.max() <= 1
    assert (fb.sum(1)[5:-5] > 0).all()


def test_text_cnn_on_ids_and_embeddings_agree():
    enc = TextCNN(vocab_size=20, embed_dim=6, width=3)
    ids = torch.randint(0, 20, (2, 9))
    torch.testing.assert_close(enc(ids), enc(enc.embed(ids)))
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 20\)"):
        enc(torch.full((1, 9), 25))
    with pytest.raises(ValueError, match="at least 5 tokens"):
        enc(torch.zeros(1, 3, dtype=torch.long))


def test_tokenizer_round_trip():
    tok = SimpleTokenizer.fit(["The cat sat", "the dog sat down"], max_vocab=3)
    # The 3 most frequent words (ties broken alphabetically), numbered in order of appearance.
    assert tok.vocab == ["<pad>", "<unk>", "the", "cat", "sat"]
    ids = tok(["the dog", "cat sat the"], max_len=4)
    assert ids.tolist() == [[2, 1, 0, 0], [3, 4, 2, 0]]

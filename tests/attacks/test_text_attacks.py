"""Text attacks: embedding-space PGD and discrete token edits, with the attack invariants."""

import pytest
import torch

from modfuse import FusionModel
from modfuse.attacks import EmbeddingPGD, GaussianNoise, TokenDrop, TokenSubstitution


def text_audio_model() -> FusionModel:
    torch.manual_seed(0)
    return FusionModel(
        {
            "text": {"name": "text_cnn", "vocab_size": 40, "embed_dim": 8, "width": 4},
            "audio": {
                "name": "audio_cnn",
                "sample_rate": 8000,
                "n_mels": 16,
                "width": 4,
                "depth": 2,
            },
        },
        num_classes=3,
    )


def batch():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(2, 40, (4, 20), generator=g)
    ids[:, 15:] = 0  # padding
    return {"text": ids, "audio": torch.randn(4, 2000, generator=g) * 0.1}


Y = torch.tensor([0, 1, 2, 0])


@pytest.mark.parametrize(
    "attack", [TokenSubstitution(rate=0.5, seed=1), TokenDrop(rate=0.5, seed=1)]
)
def test_token_attacks_keep_padding_and_other_keys(attack):
    model = text_audio_model().train()
    x = batch()
    out = attack(model, x, Y)
    assert model.training and out["audio"] is x["audio"]
    assert out["text"].dtype == torch.long and out["text"].shape == x["text"].shape
    assert torch.equal(out["text"][:, 15:], x["text"][:, 15:])  # padding untouched
    changed = (out["text"][:, :15] != x["text"][:, :15]).float().mean()
    assert 0.3 < changed < 0.7
    assert torch.equal(attack.with_strength(0.0)(model, x, Y)["text"], x["text"])
    model(out)  # the model takes the edited ids


def test_embedding_pgd_is_bounded_and_raises_the_loss():
    model = text_audio_model().eval()
    x = batch()
    emb = model.encoders["text"].embed(x["text"]).detach()
    out = EmbeddingPGD(eps=1.0, steps=5, seed=0)(model, x, Y)
    assert out["audio"] is x["audio"] and out["text"].shape == (4, 20, 8)
    assert (out["text"] - emb).flatten(1).norm(dim=1).max() <= 1.0 + 1e-5
    loss = torch.nn.functional.cross_entropy
    with torch.no_grad():
        assert loss(model(out), Y) > loss(model(x), Y)
    for p in model.parameters():
        assert p.grad is None


def test_noise_at_snr_on_audio():
    model = text_audio_model()
    x = batch()
    out = GaussianNoise(snr_db=10.0, targets=("audio",), seed=0)(model, x, Y)
    noise = out["audio"] - x["audio"]
    snr = 10 * torch.log10(x["audio"].pow(2).mean(1) / noise.pow(2).mean(1))
    assert torch.allclose(snr, torch.full((4,), 10.0), atol=0.6)
    assert out["text"] is x["text"]


def test_token_attack_on_a_float_input_is_refused():
    model = text_audio_model()
    with pytest.raises(TypeError, match="must be an integer tensor"):
        TokenDrop(targets=("audio",))(model, batch(), Y)
    with pytest.raises(ValueError, match=r"rate must be in \[0, 1\]"):
        TokenDrop(rate=2.0)

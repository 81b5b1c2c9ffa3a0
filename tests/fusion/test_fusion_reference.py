"""The fusions whose shapes einops names, against plain-torch formulas of the same functions."""

import torch

from modfuse.fusion import AttentionFusion, GatedFusion, LowRankFusion, TensorFusion
from tests.conftest import feature_batch

DIMS = {"fg": 6, "bg": 5, "audio": 4}  # sorted: audio, bg, fg


def with_one(z: torch.Tensor) -> torch.Tensor:
    return torch.cat([z, torch.ones(z.shape[0], 1)], dim=1)


def test_tensor_fusion_is_a_linear_map_of_the_flattened_outer_product():
    fusion = TensorFusion(DIMS, out_dim=7, rank_dim=3)
    feats = feature_batch(DIMS, batch=5)
    zs = [with_one(fusion.branches[m](feats[m])) for m in ["audio", "bg", "fg"]]
    # entry [b, i, j, k] = audio[b, i] * bg[b, j] * fg[b, k], flattened row-major
    outer = zs[0][:, :, None, None] * zs[1][:, None, :, None] * zs[2][:, None, None, :]
    expected = fusion.out(outer.reshape(5, -1))
    torch.testing.assert_close(fusion(feats), expected, atol=1e-6, rtol=1e-5)


def test_lowrank_fusion_is_a_weighted_sum_of_rank_one_terms():
    fusion = LowRankFusion(DIMS, out_dim=7, rank=3)
    feats = feature_batch(DIMS, batch=5)
    terms = []
    for r in range(3):
        term = torch.ones(5, 7)
        for m in ["audio", "bg", "fg"]:
            term = term * (with_one(feats[m]) @ fusion.branches[m].weight[r])
        terms.append(fusion.rank_weight[r] * term)
    expected = sum(terms) + fusion.bias
    torch.testing.assert_close(fusion(feats), expected, atol=1e-6, rtol=1e-5)


def test_gated_fusion_gate_blocks_are_per_modality_in_sorted_order():
    fusion = GatedFusion(DIMS, out_dim=7)
    feats = feature_batch(DIMS, batch=5)
    order = ["audio", "bg", "fg"]
    logits = fusion.gate(torch.cat([feats[m] for m in order], dim=1))
    blocks = torch.stack([logits[:, 7 * i : 7 * (i + 1)] for i in range(3)])  # (M, B, out)
    weights = blocks.softmax(dim=0)
    h = torch.stack([torch.tanh(fusion.branches[m](feats[m])) for m in order])
    torch.testing.assert_close(fusion(feats), (weights * h).sum(0), atol=1e-6, rtol=1e-5)


def test_attention_fusion_reads_the_fusion_tokens_output():
    fusion = AttentionFusion(DIMS, out_dim=7, d_model=8, heads=2).eval()
    feats = feature_batch(DIMS, batch=5)
    order = ["audio", "bg", "fg"]
    tokens = torch.stack([fusion.branches[m](feats[m]) for m in order], dim=1)
    tokens = tokens + fusion.modality_embedding
    cls = fusion.fusion_token.expand(5, 1, 8)
    encoded = fusion.encoder(torch.cat([cls, tokens], dim=1))
    torch.testing.assert_close(fusion(feats), fusion.out(encoded[:, 0]), atol=1e-6, rtol=1e-5)

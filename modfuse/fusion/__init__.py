"""Fusion layers: ``dict[str, (B, D_m)] -> (B, out_dim)``. One fusion per file."""

from modfuse.fusion.attention import AttentionFusion
from modfuse.fusion.base import Fusion
from modfuse.fusion.concat import ConcatFusion
from modfuse.fusion.gated import GatedFusion
from modfuse.fusion.lowrank import LowRankFusion
from modfuse.fusion.recurrent import RecurrentFusion
from modfuse.fusion.sum import SumFusion
from modfuse.fusion.tensor import TensorFusion

__all__ = [
    "AttentionFusion",
    "ConcatFusion",
    "Fusion",
    "GatedFusion",
    "LowRankFusion",
    "RecurrentFusion",
    "SumFusion",
    "TensorFusion",
]

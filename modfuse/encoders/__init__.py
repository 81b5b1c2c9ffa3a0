"""Encoders: one modality's tensor -> (B, D) features. One family per file."""

from modfuse.encoders.audio import AudioCNN
from modfuse.encoders.mlp import MLPEncoder
from modfuse.encoders.small_cnn import SmallCNN
from modfuse.encoders.text import SimpleTokenizer, TextCNN
from modfuse.encoders.timm import TimmEncoder

__all__ = ["AudioCNN", "MLPEncoder", "SimpleTokenizer", "SmallCNN", "TextCNN", "TimmEncoder"]

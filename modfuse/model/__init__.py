"""The fusion model: encoders side by side, a fusion layer and a head, with its parts.

- :mod:`~modfuse.model.fusion_model`: :class:`FusionModel`;
- :mod:`~modfuse.model.feature_head`: :class:`FeatureHead`, a model's fusion and head on
  cached features;
- :mod:`~modfuse.model.views`: :class:`ContextViews`, the raw image and mask -> fg / bg views;
- :mod:`~modfuse.model.parts`: how specs become encoders and fusions;
- :mod:`~modfuse.model.files`: a saved model's folder (safetensors + JSON).
"""

from modfuse.model.feature_head import FeatureHead
from modfuse.model.files import MODEL_FORMAT
from modfuse.model.fusion_model import FusionModel
from modfuse.model.views import ContextViews

__all__ = ["MODEL_FORMAT", "ContextViews", "FeatureHead", "FusionModel"]

"""A study's encoders and device are checked as a run config's are (one shared check)."""

import pytest
from pydantic import ValidationError

from modfuse.study import StudyConfig

BASE = {
    "data": {"callable": "modfuse.study.toy:three_modalities"},
    "models": {"a_only": {"modalities": ["a"]}},
}


def test_a_frozen_encoder_without_weights_is_refused_unless_random_ok():
    frozen = {"a": {"name": "mlp", "in_dim": 4, "freeze": True}}
    with pytest.raises(ValidationError, match="encoders.a"):
        StudyConfig.model_validate({**BASE, "encoders": frozen})
    ok = {"a": {**frozen["a"], "random_ok": True}}
    assert StudyConfig.model_validate({**BASE, "encoders": ok}).encoders["a"].name == "mlp"


def test_an_unknown_encoder_and_a_bad_device_are_named():
    with pytest.raises(ValidationError, match="encoders.a: .*'mlpp'"):
        StudyConfig.model_validate({**BASE, "encoders": {"a": "mlpp"}})
    with pytest.raises(ValidationError, match="device"):
        StudyConfig.model_validate({**BASE, "encoders": {"a": "mlp"}, "device": "gpu7"})

"""The three-modality example: reliance and missing-modality accuracy tell the same story."""

import importlib.util
import sys
from pathlib import Path

EXAMPLE = Path(__file__).parents[1] / "examples" / "custom_modality.py"


def test_dropping_the_most_relied_on_modality_costs_the_most(tmp_path):
    spec = importlib.util.spec_from_file_location("custom_modality", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules["custom_modality"] = module
    spec.loader.exec_module(module)
    result = module.main(["--quick", "--out", str(tmp_path)])
    reliance = {m: v["accuracy_drop"] for m, v in result["reliance"].items()}
    drop = result["drop"]
    assert set(reliance) == set(drop) == {"image", "audio", "text"}
    most_relied = max(reliance, key=reliance.get)
    assert min(drop, key=drop.get) == most_relied
    clean = next(r["accuracy"] for r in result["rows"] if r["perturbation"] == "clean")
    assert clean > 0.75  # together the modalities answer the task (chance: 0.25)
    assert clean - drop[most_relied] > 0.2  # and losing that one hurts
    attacked = {r["perturbation"] for r in result["rows"]}
    assert {"image_fgsm", "audio_noise", "text_substitution", "drop_text"} <= attacked
    report = (tmp_path / "report" / "report.md").read_text()
    assert "accuracy when missing" in report and "Modality reliance" in report
    # The model names the example's own components, and reloads while they are registered.
    from modfuse import FusionModel

    again = FusionModel.load(tmp_path / "model")
    assert type(again.fusion).__name__ == "WeightedMeanFusion"

import pytest

from modfuse.config.schema import (
    ExperimentConfig,
    ModelConfig,
    ValidationError,
    load_config,
    save_config,
)


def experiment(**train) -> dict:
    return {
        "model": {
            "encoders": {"fg": "small_cnn", "bg": {"name": "small_cnn", "width": 8}},
            "fusion": {"name": "gated"},
            "num_classes": 3,
            "fusion_dim": 16,
            "views": {"size": 32},
        },
        "train": {"epochs": 2, **train},
    }


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_round_trip(tmp_path, suffix):
    cfg = ExperimentConfig.model_validate(experiment())
    save_config(cfg, tmp_path / f"c{suffix}")
    again = load_config(tmp_path / f"c{suffix}")
    assert again == cfg
    model = again.model.build()
    assert model.views.size == 32 and model.fusion.out_dim == 16


@pytest.mark.parametrize(
    "change,field",
    [
        (lambda c: c["model"].update(fusion="nope"), "fusion"),
        (lambda c: c["model"].update(fusion_dim=-4), "fusion_dim"),
        (lambda c: c["model"]["encoders"].update(x="cnn9"), "encoders"),
        (lambda c: c["model"].update(colour="red"), "colour"),
        (lambda c: c["model"]["encoders"].update(x="mlp"), "missing a required argument: 'in_dim'"),
        (lambda c: c["model"].update(fusion={"name": "gated", "heads": 4}), "unexpected keyword"),
        (lambda c: c["train"].update(regularizers=[{"name": "nope"}]), "regularizers"),
    ],
)
def test_invalid_config_names_the_field(change, field):
    data = experiment()
    change(data)
    with pytest.raises(ValidationError, match=field):
        ExperimentConfig.model_validate(data)


def test_unknown_modality_in_regularizer(monkeypatch):
    from modfuse._registry import REGULARIZERS

    if "l2_test_reg" not in REGULARIZERS:
        REGULARIZERS.register("l2_test_reg")(lambda modality, alpha=1.0: None)
    data = experiment(regularizers=[{"name": "l2_test_reg", "modality": "audio"}])
    with pytest.raises(
        ValidationError, match=r"regularizers.0.modality: 'audio' is not a modality"
    ):
        ExperimentConfig.model_validate(data)
    REGULARIZERS.unregister("l2_test_reg")


def test_malformed_yaml_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model: {encoders: [unclosed\n")
    with pytest.raises(ValueError, match="malformed YAML"):
        load_config(path)
    path.write_text("!!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ValueError, match="malformed YAML"):
        load_config(path)


def test_model_config_rejects_empty_encoders():
    with pytest.raises(ValidationError, match="encoders"):
        ModelConfig(encoders={}, num_classes=2)


@pytest.mark.parametrize("name", ["../outside", "/etc/x", "a/b", "..", ""])
def test_run_name_cannot_escape_the_run_folder(name):
    data = experiment()
    data["name"] = name
    with pytest.raises(ValidationError, match="name"):
        ExperimentConfig.model_validate(data)


@pytest.mark.parametrize("root", ["../elsewhere", "/tmp/world", "data/../../x"])
def test_written_data_root_cannot_escape(root):
    data = experiment()
    data["data"] = {"kind": "synthetic", "root": root}
    with pytest.raises(ValidationError, match="relative path without"):
        ExperimentConfig.model_validate(data)
    data["data"]["kind"] = "coco"  # read, not written: any path
    ExperimentConfig.model_validate(data)

"""Configs fail when they load, not after training: component arguments against their
signatures and types, finite numbers, strict YAML, and saved models checked against their
config.json before anything is allocated."""

import json
import time

import pytest
import torch
from safetensors.torch import load_file, save_file

from modfuse import FusionModel
from modfuse.config.schema import ExperimentConfig, ValidationError, load_config, load_yaml_text


def experiment(**sections) -> dict:
    cfg = {
        "model": {
            "encoders": {"fg": "small_cnn", "bg": {"name": "small_cnn", "width": 8}},
            "num_classes": 3,
            "views": {"size": 32},
        },
        "train": {"epochs": 1},
        "eval": {"sweeps": [{"name": "fg_pgd", "attack": {"name": "pgd"}, "strengths": [0.01]}]},
    }
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value}
    return cfg


def rejected(data: dict, *words: str) -> str:
    with pytest.raises(ValidationError) as info:
        ExperimentConfig.model_validate(data)
    text = str(info.value)
    for word in words:
        assert word in text, (word, text)
    return text


@pytest.mark.parametrize(
    "attack,words",
    [
        ({"name": "pgd", "epss": 1}, ["epss", "eps"]),
        ({"name": "pgd", "steps": 2.5}, ["steps", "must be int", "2.5"]),
        ({"name": "pgd", "steps": 0}, ["steps", "0"]),
        ({"name": "pgd", "targets": []}, ["target"]),
        ({"name": "fgsm", "eps": "8/255"}, ["eps", "'8/255'"]),
        ({"name": "pgd", "norm": "l3"}, ["norm", "l3"]),
    ],
)
@pytest.mark.parametrize("where", ["train.adversarial", "eval.sweeps.0.attack"])
def test_attack_arguments_are_checked_at_load(attack, words, where):
    if where == "train.adversarial":
        data = experiment(train={"adversarial": attack})
    else:
        data = experiment(eval={"sweeps": [{"name": "a", "attack": attack, "strengths": [0.1]}]})
    rejected(data, where, f"attack {attack['name']!r}", *words)


@pytest.mark.parametrize(
    "reg,words",
    [
        ({"name": "modality_penalty", "modality": "fg", "alpha": "big"}, ["alpha", "float"]),
        ({"name": "modality_penalty", "modality": "fg", "p": 0}, ["p must be > 0"]),
        ({"name": "modality_dropout", "p": 1.5}, ["p must be in [0, 1)"]),
        ({"name": "consistency", "perturbation": {"name": "pgd", "steps": 0}}, ["steps"]),
    ],
)
def test_regularizer_arguments_are_checked_at_load(reg, words):
    rejected(experiment(train={"regularizers": [reg]}), "train.regularizers", *words)


@pytest.mark.parametrize(
    "spec,words",
    [
        ({"name": "small_cnn", "width": 2.5}, ["width", "must be int", "2.5"]),
        ({"name": "small_cnn", "width": "16"}, ["width", "must be int", "'16'"]),
        ({"name": "small_cnn", "batchnorm": "yes"}, ["batchnorm", "bool"]),
        ({"name": "small_cnn", "weights": 3}, ["weights", "str | os.PathLike | None"]),
        ({"name": "timm:resnet18", "mean": 0.5}, ["mean", "Sequence[float]"]),
        ({"name": "small_cnn", "widht": 8}, ["widht", "width"]),
    ],
)
def test_encoder_arguments_are_checked_against_their_types(spec, words):
    data = experiment()
    data["model"]["encoders"]["fg"] = spec
    rejected(data, "model.encoders", "encoders.fg", *words)


def test_fusion_arguments_are_checked_against_their_types():
    data = experiment()
    data["model"]["fusion"] = {"name": "attention", "heads": 2.0}
    rejected(data, "model.fusion", "heads", "int")


def test_well_typed_arguments_pass():
    data = experiment(
        train={
            "adversarial": {"name": "pgd", "eps": 0.03, "steps": 3, "targets": ["fg"]},
            "regularizers": [{"name": "modality_penalty", "modality": "fg", "alpha": 1}],
        },
        eval={
            "sweeps": [
                {"name": "blur", "attack": {"name": "blur", "sigma": [0.5, 2.0]}, "strengths": [1]}
            ]
        },
    )
    data["model"]["encoders"]["fg"] = {"name": "small_cnn", "width": 8, "weights": None}
    data["model"]["encoders"]["bg"] = {"name": "timm:resnet18", "mean": [0.5, 0.5, 0.5]}
    ExperimentConfig.model_validate(data)


def test_adversarial_training_on_a_view_of_a_views_model_loads(tmp_path):
    from modfuse.training.trainer import Trainer

    data = experiment(train={"adversarial": {"name": "fgsm", "eps": 0.03, "targets": ["fg"]}})
    path = tmp_path / "adv.yaml"
    path.write_text(json.dumps(data))
    cfg = load_config(path)
    assert cfg.model.views is not None and cfg.train.adversarial.targets == ["fg"]
    Trainer(cfg.model.build(), adversarial=cfg.train.adversarial.as_spec(), progress=False)


@pytest.mark.parametrize(
    "text,field",
    [
        ("train: {lr: .inf}", "train.lr"),
        ("train: {weight_decay: .nan}", "train.weight_decay"),
        ("train: {adversarial_mix: .nan}", "train.adversarial_mix"),
        ("data: {context_purity: .nan}", "data.context_purity"),
        ("model: {encoders: {fg: small_cnn}, num_classes: 3, views: {margin: .inf}}", "margin"),
        ("eval: {sweeps: [{name: b, attack: {name: blur}, strengths: [.nan]}]}", "strengths"),
        ("eval: {sweeps: [{name: b, attack: {name: blur}, strengths: [.inf]}]}", "strengths"),
        ("train: {adversarial: {name: fgsm, eps: .inf}}", "eps"),
    ],
)
def test_nan_and_inf_are_rejected_at_load(tmp_path, text, field):
    base = (
        "" if text.startswith("model:") else "model: {encoders: {fg: small_cnn}, num_classes: 3}\n"
    )
    path = tmp_path / "c.yaml"
    path.write_text(base + text + "\n")
    with pytest.raises(ValidationError) as info:
        load_config(path)
    message = str(info.value)
    assert field in message and ("finite" in message or "inf" in message.lower()), message


@pytest.mark.parametrize("seed", [-1, 2**40])
def test_seed_out_of_range_is_rejected(seed):
    with pytest.raises(ValidationError, match="seed"):
        ExperimentConfig.model_validate({**experiment(), "seed": seed})


def test_sweep_strengths_and_source_are_checked_at_load():
    sweep = {"name": "d", "attack": {"name": "drop", "targets": ["fg"]}, "strengths": [1, 2]}
    rejected(experiment(eval={"sweeps": [sweep]}), "eval.sweeps.0", "no strength to sweep")
    sweep = {"name": "t", "attack": {"name": "fgsm"}, "strengths": [0.1], "source": "other"}
    rejected(experiment(eval={"sweeps": [sweep]}), "eval.sweeps.0.source", "'other'")


@pytest.mark.parametrize(
    "text,where",
    [
        ("seed: 1\nseed: 2\n", "duplicate key 'seed' at line 2"),
        ("train:\n  lr: 0.1\n  epochs: 2\n  lr: 0.2\n", "duplicate key 'lr' at line 4"),
        ("model: {num_classes: 3, num_classes: 4}\n", "duplicate key 'num_classes'"),
    ],
)
def test_duplicate_keys_are_an_error(tmp_path, text, where):
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=where):
        load_config(path)


def test_alias_bomb_is_refused_quickly(tmp_path):
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    assert path.stat().st_size < 500
    start = time.perf_counter()
    with pytest.raises(ValueError, match="expands to .* nodes"):
        load_config(path)
    assert time.perf_counter() - start < 2.0


def test_modest_aliases_and_merges_still_load():
    text = (
        "enc: &enc {name: small_cnn, width: 8}\n"
        "model:\n  encoders: {fg: *enc, bg: {<<: *enc, width: 16}}\n  num_classes: 3\n"
    )
    data = load_yaml_text(text)
    data.pop("enc")
    cfg = ExperimentConfig.model_validate(data)
    assert cfg.model.encoders["bg"].width == 16 and cfg.model.encoders["fg"].width == 8


@pytest.fixture
def saved(tmp_path):
    model = FusionModel({"fg": "small_cnn", "bg": "small_cnn"}, "concat", num_classes=4)
    model.save(tmp_path / "m")
    return tmp_path / "m"


def test_huge_num_classes_in_config_json_is_checked_before_allocating(saved):
    config = json.loads((saved / "config.json").read_text())
    config["model"]["num_classes"] = 10**12  # a real model would need terabytes
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError) as info:
        FusionModel.load(saved)
    message = str(info.value)
    assert "num_classes=1000000000000" in message
    assert "(4,) in the file" in message and "(1000000000000,) expected" in message


def test_wrong_shape_tensor_is_a_value_error_naming_both_shapes(saved):
    state = load_file(str(saved / "model.safetensors"))
    state["fusion.bias"] = torch.zeros(5)
    save_file(state, str(saved / "model.safetensors"))
    with pytest.raises(ValueError, match=r"'fusion.bias' is \(5,\) in the file, \(4,\) expected"):
        FusionModel.load(saved)
    del state["fusion.bias"]
    save_file(state, str(saved / "model.safetensors"))
    with pytest.raises(ValueError, match=r"1 tensors missing from the file .*fusion.bias"):
        FusionModel.load(saved)


def _experiment(**train: object) -> dict:
    return {
        "model": {
            "encoders": {"fg": "small_cnn", "bg": "small_cnn"},
            "num_classes": 3,
            "missing": train.pop("missing", "error"),
            "unimodal_heads": train.pop("unimodal_heads", False),
        },
        "train": train,
    }


def test_learned_placeholders_need_modality_dropout_in_the_config():
    with pytest.raises(ValidationError, match="'learned' placeholders are trained only when"):
        ExperimentConfig.model_validate(_experiment(missing="learned"))
    ok = ExperimentConfig.model_validate(_experiment(missing="learned", modality_dropout=0.2))
    assert ok.model.missing == "learned"


def test_unimodal_weight_needs_unimodal_heads_and_reaches_the_config():
    with pytest.raises(ValidationError, match="unimodal_weight: 0.5 needs model.unimodal_heads"):
        ExperimentConfig.model_validate(_experiment(unimodal_weight=0.5))
    cfg = ExperimentConfig.model_validate(_experiment(unimodal_weight=0.5, unimodal_heads=True))
    assert cfg.train.unimodal_weight == 0.5

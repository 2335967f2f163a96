from pathlib import Path

import pytest
import yaml

from cnnlab.config import load_config, validate_config
from cnnlab.config.load import allowed_keys, apply_override
from cnnlab.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path, cfg) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("path", sorted((REPO / "configs").rglob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_validate(path):
    cfg = load_config(path)
    assert cfg.name


def test_one_key_layer_mappings_become_tagged_specs():
    cfg = validate_config({"name": "x", "model": {"layers": [
        {"conv2d": {"filters": 8}}, {"maxpool2d": None}, "flatten", {"dense": {"units": 3}}]}})
    assert [layer.type for layer in cfg.model.layers] == ["conv2d", "maxpool2d", "flatten", "dense"]
    assert cfg.model.layers[0].padding == "valid"  # Keras's default


@pytest.mark.parametrize("raw, fragments", [
    ({"name": "x", "train": {"lrr": 1}}, ["`train.lrr`", "Allowed keys there", "lr,"]),
    ({"name": "x", "train": {"lr": "fast"}}, ["`train.lr`", "'fast'", "valid number"]),
    ({"name": "x", "train": {"lr": -1}}, ["`train.lr`", "greater than 0"]),
    ({"name": "x", "data": {"image_size": 0}}, ["`data.image_size`", "greater than 0"]),
    ({"name": "x", "model": {"layers": [{"conv2d": {"filters": 3, "filterz": 1}}]}},
     ["`model.layers.0.conv2d.filterz`", "filters"]),
    ({"name": "x", "model": {"layers": [{"convolution": {}}]}}, ["model.layers.0", "conv2d"]),
    ({"name": "x", "augment": [{"rotation": {"factor": 0.2, "fill": 1}}]},
     ["`augment.0.rotation.fill`", "fill_mode"]),
    ({"name": "x", "train": {"optimizer": "adagrad"}}, ["`train.optimizer`", "'sgd'"]),
    ({"name": "x", "train": {"checkpoint": {"monitor": "val_acc"}}}, ["val_accuracy"]),
    ({"name": "bad name!"}, ["`name`"]),
    ({"data": {}}, ["`name` is required"]),
    ({"name": "x", "data": {"val_split": 0.6, "test_split": 0.5}}, ["below 1"]),
    ({"name": "x", "train": {"epochs": 3, "progressive_resize": [{"epochs": 3, "size": 24}]}},
     ["progressive_resize covers 3 epochs of 3"]),
    ({"name": "x", "train": {"lookahead": {"ramp": "linear"}}}, ["`train.lookahead.ramp`", "'cubic'"]),
    ({"name": "x", "train": {"validation_freq": 2, "reduce_lr_on_plateau": {}}},
     ["`train`", "monitors val_loss", "validation_freq: 1"]),
])
def test_bad_values_name_the_yaml_path_and_what_is_allowed(raw, fragments):
    with pytest.raises(ConfigError) as info:
        validate_config(raw)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_overrides_are_type_checked(tmp_path):
    path = write(tmp_path, {"name": "x"})
    cfg = load_config(path, ["train.lr=1e-3", "train.epochs=3", "data.classes=[cat, dog]",
                             "train.early_stopping.patience=2"])
    assert cfg.train.lr == pytest.approx(1e-3)
    assert cfg.train.epochs == 3 and cfg.data.classes == ["cat", "dog"]
    assert cfg.train.early_stopping.patience == 2
    with pytest.raises(ConfigError, match="train.epochs"):
        load_config(path, ["train.epochs=many"])
    with pytest.raises(ConfigError, match="train.nope"):
        load_config(path, ["train.nope=1"])
    with pytest.raises(ConfigError, match="key.path=value"):
        load_config(path, ["train.lr"])


def test_override_into_a_list_item():
    raw = {"model": {"layers": [{"dense": {"units": 3}}]}}
    apply_override(raw, "model.layers.0.dense.units=7")
    assert raw["model"]["layers"][0]["dense"]["units"] == 7


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(listing)


def test_allowed_keys_follow_nested_sections_and_unions():
    assert "lr" in allowed_keys(["train"])
    assert "patience" in allowed_keys(["train", "early_stopping"])
    assert "filters" in allowed_keys(["model", "sequential", "layers", "0", "conv2d"])
    assert set(allowed_keys(["train", "loss", "focal"])) >= {"gamma", "alpha"}

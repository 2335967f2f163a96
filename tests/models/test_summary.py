"""The Keras nets of report 002 (/work/shared/reference/002_*.txt) give Keras's model.summary().

Each net is written as a config, without its final ``Dense(10, activation='softmax')``: the
builder appends the output layer itself (logits; softmax is in the loss).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from cnnlab.config.schema import SequentialModelConfig
from cnnlab.models import build_model, summarize

IN_SHAPE = (3, 32, 32)


def conv(filters: int) -> dict[str, Any]:
    return {"conv2d": {"filters": filters, "kernel": 3, "activation": "relu", "padding": "same"}}


POOL = {"maxpool2d": {"pool": 2}}
BN = {"batchnorm": {}}
FLATTEN = {"flatten": {}}

STEP1 = [conv(32), conv(32), POOL, FLATTEN]
STEP2 = [conv(32), conv(32), POOL, conv(64), conv(64), POOL, FLATTEN]
STEP7 = [
    conv(32), BN, conv(32), BN, POOL, {"dropout": {"rate": 0.2}},
    conv(64), BN, conv(64), BN, POOL, {"dropout": {"rate": 0.3}},
    conv(128), BN, conv(128), BN, POOL, {"dropout": {"rate": 0.4}},
    FLATTEN,
    {"dense": {"units": 128, "activation": "relu"}},
    {"dense": {"units": 64, "activation": "relu"}},
]

# (name, type, output shape, params) as printed by Keras in report 002.
KERAS_STEP1 = [
    ("conv2d", "Conv2D", (None, 32, 32, 32), 896),
    ("conv2d_1", "Conv2D", (None, 32, 32, 32), 9248),
    ("max_pooling2d", "MaxPooling2D", (None, 16, 16, 32), 0),
    ("flatten", "Flatten", (None, 8192), 0),
    ("dense", "Dense", (None, 10), 81930),
]
KERAS_STEP2 = [
    ("conv2d", "Conv2D", (None, 32, 32, 32), 896),
    ("conv2d_1", "Conv2D", (None, 32, 32, 32), 9248),
    ("max_pooling2d", "MaxPooling2D", (None, 16, 16, 32), 0),
    ("conv2d_2", "Conv2D", (None, 16, 16, 64), 18496),
    ("conv2d_3", "Conv2D", (None, 16, 16, 64), 36928),
    ("max_pooling2d_1", "MaxPooling2D", (None, 8, 8, 64), 0),
    ("flatten", "Flatten", (None, 4096), 0),
    ("dense", "Dense", (None, 10), 40970),
]
KERAS_STEP7 = [
    ("conv2d", "Conv2D", (None, 32, 32, 32), 896),
    ("batch_normalization", "BatchNormalization", (None, 32, 32, 32), 128),
    ("conv2d_1", "Conv2D", (None, 32, 32, 32), 9248),
    ("batch_normalization_1", "BatchNormalization", (None, 32, 32, 32), 128),
    ("max_pooling2d", "MaxPooling2D", (None, 16, 16, 32), 0),
    ("dropout", "Dropout", (None, 16, 16, 32), 0),
    ("conv2d_2", "Conv2D", (None, 16, 16, 64), 18496),
    ("batch_normalization_2", "BatchNormalization", (None, 16, 16, 64), 256),
    ("conv2d_3", "Conv2D", (None, 16, 16, 64), 36928),
    ("batch_normalization_3", "BatchNormalization", (None, 16, 16, 64), 256),
    ("max_pooling2d_1", "MaxPooling2D", (None, 8, 8, 64), 0),
    ("dropout_1", "Dropout", (None, 8, 8, 64), 0),
    ("conv2d_4", "Conv2D", (None, 8, 8, 128), 73856),
    ("batch_normalization_4", "BatchNormalization", (None, 8, 8, 128), 512),
    ("conv2d_5", "Conv2D", (None, 8, 8, 128), 147584),
    ("batch_normalization_5", "BatchNormalization", (None, 8, 8, 128), 512),
    ("max_pooling2d_2", "MaxPooling2D", (None, 4, 4, 128), 0),
    ("dropout_2", "Dropout", (None, 4, 4, 128), 0),
    ("flatten", "Flatten", (None, 2048), 0),
    ("dense", "Dense", (None, 128), 262272),
    ("dense_1", "Dense", (None, 64), 8256),
    ("dense_2", "Dense", (None, 10), 650),
]

# (layers, Keras rows, total, trainable, non-trainable). Step 7's report prints "Trainable
# params: 559,882", a typo: 559,978 - 896 = 559,082, which step 6 (the same net) prints.
NETS = {
    "step1": (STEP1, KERAS_STEP1, 92_074, 92_074, 0),
    "step2": (STEP2, KERAS_STEP2, 106_538, 106_538, 0),
    "step7": (STEP7, KERAS_STEP7, 559_978, 559_082, 896),
}


def build(layers: list[Any], **kwargs: Any) -> torch.nn.Module:
    cfg = SequentialModelConfig.model_validate({"layers": layers, **kwargs})
    return build_model(cfg, IN_SHAPE, 10)


@pytest.mark.parametrize("net", sorted(NETS))
def test_param_counts_match_keras(net: str) -> None:
    layers, keras_rows, total, trainable, non_trainable = NETS[net]
    summary = summarize(build(layers), IN_SHAPE)
    assert [(r.name, r.params) for r in summary.rows] == [(r[0], r[3]) for r in keras_rows]
    assert (summary.total, summary.trainable, summary.non_trainable) == (
        total, trainable, non_trainable)
    assert sum(r.params for r in summary.rows) == total


@pytest.mark.parametrize("net", sorted(NETS))
def test_output_shapes_and_types_match_keras(net: str) -> None:
    layers, keras_rows, *_ = NETS[net]
    summary = summarize(build(layers), IN_SHAPE)
    assert [(r.name, r.type_name, r.output_shape) for r in summary.rows] == [
        r[:3] for r in keras_rows]


def test_text_is_a_keras_table() -> None:
    text = summarize(build(STEP7), IN_SHAPE).text
    lines = text.splitlines()
    assert lines[0] == 'Model: "sequential"'
    assert "Keras-style" in lines[1] and "(batch, height, width, channels)" in lines[1]
    header = next(line for line in lines if "Layer (type)" in line)
    assert "Output Shape" in header and "Param #" in header
    assert any(line.split() == ["conv2d_5", "(Conv2D)", "(None,", "8,", "8,", "128)", "147,584"]
               for line in lines)
    assert "Total params: 559,978" in lines
    assert "Trainable params: 559,082" in lines
    assert "Non-trainable params: 896" in lines
    assert str(summarize(build(STEP1), IN_SHAPE)) == summarize(build(STEP1), IN_SHAPE).text


def test_frozen_layers_are_marked_and_counted_non_trainable() -> None:
    model = build(STEP7)
    for p in model.conv2d.parameters():
        p.requires_grad_(False)
    summary = summarize(model, IN_SHAPE)
    row = summary.rows[0]
    assert row.type_name == "Conv2D, frozen"
    assert summary.non_trainable == 896 + 896
    assert summary.trainable == 559_082 - 896
    assert summary.total == 559_978
    assert "conv2d (Conv2D, frozen)" in summary.text
    assert summary.rows[1].type_name == "BatchNormalization"


def test_summary_restores_training_modes_and_leaves_running_stats() -> None:
    model = build(STEP7)
    model.train()
    model.batch_normalization.eval()  # e.g. a frozen BatchNorm kept in inference mode
    before = model.batch_normalization_1.running_mean.clone()
    summarize(model, IN_SHAPE)
    assert model.training and model.conv2d.training
    assert not model.batch_normalization.training
    assert torch.equal(model.batch_normalization_1.running_mean, before)


def test_summary_of_other_layer_kinds() -> None:
    layers = [
        {"conv2d": {"filters": 8, "kernel": 3, "strides": 2, "padding": "same"}},
        {"batchnorm": {}},
        {"activation": {"activation": "relu"}},
        {"avgpool2d": {"pool": 2, "padding": "same"}},
        {"global_avg_pool": {}},
        {"dense": {"units": 6}},
        {"batchnorm": {}},
    ]
    summary = summarize(build(layers), IN_SHAPE)
    assert [(r.name, r.type_name, r.output_shape, r.params) for r in summary.rows] == [
        ("conv2d", "Conv2D", (None, 16, 16, 8), 224),
        ("batch_normalization", "BatchNormalization", (None, 16, 16, 8), 32),
        ("activation", "Activation", (None, 16, 16, 8), 0),
        ("average_pooling2d", "AveragePooling2D", (None, 8, 8, 8), 0),
        ("global_average_pooling2d", "GlobalAveragePooling2D", (None, 8), 0),
        ("dense", "Dense", (None, 6), 54),
        ("batch_normalization_1", "BatchNormalization", (None, 6), 24),
        ("dense_1", "Dense", (None, 10), 70),
    ]
    assert summary.non_trainable == 16 + 12

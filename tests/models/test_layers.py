"""Layer building: Keras semantics of each layer spec, names, conv_block, L2 and init."""

from __future__ import annotations

import math
import typing
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.config import schema
from cnnlab.config.schema import SequentialModelConfig
from cnnlab.errors import ConfigError
from cnnlab.models import ACTIVATIONS, INITIALIZERS, LAYERS, build_model, l2_penalty, summarize


def build(layers: list[Any], in_shape: tuple[int, int, int] = (3, 32, 32), classes: int = 10,
          **kwargs: Any) -> nn.Sequential:
    cfg = SequentialModelConfig.model_validate({"layers": layers, **kwargs})
    model = build_model(cfg, in_shape, classes)
    assert isinstance(model, nn.Sequential)
    return model


def names(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_children()]


# ------------------------------------------------------------------------------ registries

def test_layers_cover_every_layer_spec() -> None:
    (union,) = typing.get_args(schema.LayerSpec)[:1]
    types = {typing.get_args(cls.model_fields["type"].annotation)[0]
             for cls in typing.get_args(union)}
    assert set(LAYERS.names()) == types


def test_activations_are_exactly_the_schema_literal() -> None:
    assert set(ACTIVATIONS.names()) == set(typing.get_args(schema.Activation))


def test_initializers_are_exactly_the_schema_literal() -> None:
    init = SequentialModelConfig.model_fields["init"].annotation
    assert set(INITIALIZERS.names()) == set(typing.get_args(init))


def test_activation_semantics() -> None:
    x = torch.linspace(-2, 2, 12).reshape(1, 3, 2, 2)  # (B, C, H, W)
    assert torch.equal(ACTIVATIONS.get("linear")()(x), x)
    assert torch.allclose(ACTIVATIONS.get("leaky_relu")()(x), torch.where(x > 0, x, 0.2 * x))
    # Keras's softmax runs over the last (channel) axis of NHWC: dim 1 of NCHW.
    assert torch.allclose(ACTIVATIONS.get("softmax")()(x).sum(dim=1), torch.ones(1, 2, 2))
    model = build([{"conv2d": {"filters": 4, "activation": "softmax"}}, {"flatten": {}}])
    assert isinstance(model.conv2d.act, nn.Softmax)


# ------------------------------------------------------------------------------- padding

@pytest.mark.parametrize("size", [(7, 9), (5, 5), (8, 6), (31, 32)])
@pytest.mark.parametrize("kernel", [2, 3, 5])
def test_conv_same_with_stride_2_gives_tf_sizes(size: tuple[int, int], kernel: int) -> None:
    model = build([{"conv2d": {"filters": 4, "kernel": kernel, "strides": 2, "padding": "same"}},
                   {"flatten": {}}], in_shape=(3, *size))
    out = model.conv2d(torch.zeros(2, 3, *size))
    assert tuple(out.shape) == (2, 4, math.ceil(size[0] / 2), math.ceil(size[1] / 2))


def test_conv_same_pads_like_tensorflow() -> None:
    """TF puts the odd padding cell after: 8 wide, kernel 3, stride 2 -> pad (0, 1)."""
    torch.manual_seed(0)
    model = build([{"conv2d": {"filters": 4, "kernel": 3, "strides": 2, "padding": "same"}},
                   {"flatten": {}}], in_shape=(3, 8, 7))
    layer = model.conv2d
    x = torch.randn(2, 3, 8, 7)
    # H: out 4, total 3*2+3-8 = 1 -> (0, 1); W: out 4, total 3*2+3-7 = 2 -> (1, 1).
    expected = F.conv2d(F.pad(x, (1, 1, 0, 1)), layer.conv.weight, layer.conv.bias, stride=2)
    assert torch.allclose(layer(x), expected, atol=1e-6)


def test_conv_same_stride_1_even_kernel_pads_after() -> None:
    torch.manual_seed(0)
    model = build([{"conv2d": {"filters": 4, "kernel": 2, "padding": "same"}}, {"flatten": {}}],
                  in_shape=(3, 5, 5))
    layer = model.conv2d
    x = torch.randn(1, 3, 5, 5)
    expected = F.conv2d(F.pad(x, (0, 1, 0, 1)), layer.conv.weight, layer.conv.bias)
    assert torch.allclose(layer(x), expected, atol=1e-6)


def test_conv_valid_has_no_padding() -> None:
    model = build([{"conv2d": {"filters": 4, "kernel": 3, "strides": 2}}, {"flatten": {}}],
                  in_shape=(3, 9, 8))
    assert tuple(model.conv2d(torch.zeros(1, 3, 9, 8)).shape) == (1, 4, 4, 3)


def test_pools_default_stride_valid_and_same() -> None:
    x = -torch.arange(1.0, 26.0).reshape(1, 1, 5, 5)  # all negative: zero padding would show
    valid = build([{"maxpool2d": {"pool": 2}}, {"flatten": {}}], in_shape=(1, 5, 5))
    assert tuple(valid.max_pooling2d(x).shape) == (1, 1, 2, 2)
    same = build([{"maxpool2d": {"pool": 2, "padding": "same"}}, {"flatten": {}}],
                 in_shape=(1, 5, 5))
    y = same.max_pooling2d(x)
    assert tuple(y.shape) == (1, 1, 3, 3)
    assert y[0, 0, 2, 2].item() == -25.0  # padded cells ignored, as TF's -inf padding
    avg = build([{"avgpool2d": {"pool": 2, "padding": "same"}}, {"flatten": {}}],
                in_shape=(1, 5, 5))
    z = avg.average_pooling2d(x)
    assert tuple(z.shape) == (1, 1, 3, 3)
    assert z[0, 0, 2, 2].item() == -25.0  # average over real cells only
    assert z[0, 0, 0, 2].item() == pytest.approx(-(5 + 10) / 2)
    strided = build([{"maxpool2d": {"pool": 3, "strides": 1}}, {"flatten": {}}],
                    in_shape=(1, 5, 5))
    assert tuple(strided.max_pooling2d(x).shape) == (1, 1, 3, 3)


# ----------------------------------------------------------------------------- batchnorm

def test_batchnorm_uses_keras_momentum_and_epsilon() -> None:
    model = build([{"batchnorm": {}}, {"flatten": {}}, {"batchnorm": {"momentum": 0.9}}])
    first, second = model.batch_normalization, model.batch_normalization_1
    assert isinstance(first, nn.BatchNorm2d) and isinstance(second, nn.BatchNorm1d)
    assert first.momentum == pytest.approx(0.01) and first.eps == pytest.approx(1e-3)
    assert second.momentum == pytest.approx(0.1) and second.num_features == 3 * 32 * 32


# ----------------------------------------------------------------------------- conv_block

def test_conv_block_expands_per_width() -> None:
    model = build([{"conv_block": {"filters": [32, 64], "batchnorm": "after_activation",
                                   "dropout": [0.2, 0.3]}}, {"flatten": {}}])
    # Report 002 step 4 (Keras counts; its printed total 187,386 is a typo for 107,306).
    expected = [
        ("conv2d", 896), ("batch_normalization", 128), ("conv2d_1", 9248),
        ("batch_normalization_1", 128), ("max_pooling2d", 0), ("dropout", 0),
        ("conv2d_2", 18496), ("batch_normalization_2", 256), ("conv2d_3", 36928),
        ("batch_normalization_3", 256), ("max_pooling2d_1", 0), ("dropout_1", 0),
        ("flatten", 0), ("dense", 40970),
    ]
    summary = summarize(model, (3, 32, 32))
    assert [(r.name, r.params) for r in summary.rows] == expected
    assert summary.total == 107_306 and summary.non_trainable == 384
    assert (model.dropout.p, model.dropout_1.p) == (0.2, 0.3)
    assert isinstance(model.conv2d.act, nn.ReLU)  # activation inside the conv, BN after it


def test_conv_block_batchnorm_before_activation_and_none() -> None:
    before = build([{"conv_block": {"filters": 8, "convs": 1, "batchnorm": "before_activation",
                                    "activation": "elu"}}, {"flatten": {}}])
    assert names(before) == ["conv2d", "batch_normalization", "activation", "max_pooling2d",
                             "flatten", "dense"]
    assert isinstance(before.conv2d.act, nn.Identity)
    assert isinstance(before.activation.fn, nn.ELU)
    plain = build([{"conv_block": {"filters": [8, 8], "pool": None, "dropout": 0.1}},
                   {"global_avg_pool": {}}])
    assert names(plain) == ["conv2d", "conv2d_1", "dropout", "conv2d_2", "conv2d_3",
                            "dropout_1", "global_average_pooling2d", "dense"]


def test_relu_runs_in_place_only_where_the_layer_before_keeps_no_output() -> None:
    layers = [{"conv_block": {"filters": 4, "convs": 1, "batchnorm": "before_activation"}},
              {"flatten": {}}, {"dense": {"units": 6, "activation": "sigmoid"}},
              {"activation": {"activation": "relu"}},
              {"dense": {"units": 6, "activation": "relu"}}]
    model = build(layers, classes=3)
    assert model.activation.fn.inplace  # after BatchNorm, which keeps its input
    assert not model.activation_1.fn.inplace  # sigmoid's backward needs its output
    assert model.dense_1.act.inplace
    # Same function and gradients as the out-of-place net, and autograd accepts it.
    reference = build(layers, classes=3)
    reference.load_state_dict(model.state_dict())
    for module in reference.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    x = torch.randn(5, 3, 32, 32)
    for net in (model, reference):
        net.train()
        net(x).square().sum().backward()
    for (name, a), b in zip(model.named_parameters(), reference.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-6), name


def test_conv_block_same_as_explicit_report_002_step_7() -> None:
    block = build([{"conv_block": {"filters": [32, 64, 128], "batchnorm": "after_activation",
                                   "dropout": [0.2, 0.3, 0.4]}},
                   {"flatten": {}}, {"dense": {"units": 128, "activation": "relu"}},
                   {"dense": {"units": 64, "activation": "relu"}}])
    rows = summarize(block, (3, 32, 32)).rows
    assert [r.name for r in rows][-3:] == ["dense", "dense_1", "dense_2"]
    assert sum(r.params for r in rows) == 559_978


def test_conv_block_l2_reaches_its_convs() -> None:
    model = build([{"conv_block": {"filters": 4, "convs": 2, "l2": 0.5}}, {"flatten": {}}])
    assert (model.conv2d.l2, model.conv2d_1.l2, model.dense.l2) == (0.5, 0.5, 0.0)


# ------------------------------------------------------------------------------------ L2

def test_l2_penalty_matches_hand_computation() -> None:
    torch.manual_seed(0)
    model = build([{"conv2d": {"filters": 4, "l2": 0.01}}, {"conv2d": {"filters": 4}},
                   {"flatten": {}}, {"dense": {"units": 5, "l2": 0.002}}],
                  in_shape=(3, 8, 8), output_l2=0.1)
    expected = (0.01 * model.conv2d.conv.weight.pow(2).sum()
                + 0.002 * model.dense.linear.weight.pow(2).sum()
                + 0.1 * model.dense_1.linear.weight.pow(2).sum())
    penalty = l2_penalty(model)
    assert penalty.dim() == 0
    assert torch.allclose(penalty, expected)
    penalty.backward()
    assert torch.allclose(model.conv2d.conv.weight.grad, 0.02 * model.conv2d.conv.weight)
    assert model.conv2d.conv.bias.grad is None  # biases are not penalised
    assert model.conv2d_1.conv.weight.grad is None
    # Follows the parameters when the model is converted (as it does for .to(device)).
    assert l2_penalty(model.double()).dtype == torch.float64


def test_l2_penalty_is_zero_without_l2() -> None:
    model = build([{"conv2d": {"filters": 4}}, {"flatten": {}}], in_shape=(3, 8, 8))
    penalty = l2_penalty(model)
    assert penalty.dim() == 0 and penalty.item() == 0.0


# -------------------------------------------------------------------------------- errors

def test_dense_after_conv_is_an_error_naming_flatten() -> None:
    with pytest.raises(ConfigError, match="flatten") as info:
        build([{"conv2d": {"filters": 4}}, {"dense": {"units": 8}}])
    assert "global_avg_pool" in str(info.value) and "model.layers[1]" in str(info.value)


def test_missing_flatten_before_output_is_an_error() -> None:
    with pytest.raises(ConfigError, match="flatten"):
        build([{"conv2d": {"filters": 4}}])
    with pytest.raises(ConfigError, match="flatten"):
        build([])


def test_conv_after_flatten_and_too_small_inputs_are_errors() -> None:
    with pytest.raises(ConfigError, match="4D"):
        build([{"flatten": {}}, {"conv2d": {"filters": 4}}])
    with pytest.raises(ConfigError, match=r"model.layers\[0\]"):
        build([{"conv2d": {"filters": 4, "kernel": 5}}, {"flatten": {}}], in_shape=(3, 3, 3))


# --------------------------------------------------------------------------------- names

def test_keras_names_are_unique_and_as_expected() -> None:
    model = build([{"conv2d": {"filters": 4, "padding": "same"}}, {"batchnorm": {}},
                   {"conv2d": {"filters": 4, "padding": "same"}}, {"batchnorm": {}},
                   {"maxpool2d": {}}, {"dropout": {"rate": 0.1}}, {"avgpool2d": {}},
                   {"activation": {"activation": "tanh"}}, {"flatten": {}},
                   {"dense": {"units": 8}}, {"dropout": {"rate": 0.1}}])
    assert names(model) == [
        "conv2d", "batch_normalization", "conv2d_1", "batch_normalization_1", "max_pooling2d",
        "dropout", "average_pooling2d", "activation", "flatten", "dense", "dropout_1",
        "dense_1",
    ]
    assert len(set(names(model))) == len(names(model))
    assert model[-1] is model.dense_1  # the output layer is the last dense


def test_given_names_are_kept_and_auto_names_avoid_them() -> None:
    model = build([{"conv2d": {"filters": 4, "name": "conv2d_1"}}, {"conv2d": {"filters": 4}},
                   {"flatten": {"name": "to_vector"}}, {"dense": {"units": 8, "name": "dense"}}],
                  in_shape=(3, 8, 8))
    assert names(model) == ["conv2d_1", "conv2d", "to_vector", "dense", "dense_1"]


def test_named_conv_block_prefixes_its_layers() -> None:
    model = build([{"conv_block": {"filters": [4, 8], "convs": 1, "name": "features",
                                   "batchnorm": "after_activation", "dropout": 0.1}},
                   {"conv_block": {"filters": 8, "convs": 1}}, {"flatten": {}}])
    assert names(model) == [
        "features_conv2d", "features_batch_normalization", "features_max_pooling2d",
        "features_dropout", "features_conv2d_1", "features_batch_normalization_1",
        "features_max_pooling2d_1", "features_dropout_1",
        "conv2d", "max_pooling2d", "flatten", "dense",
    ]


def test_repeated_or_dotted_names_are_errors() -> None:
    with pytest.raises(ConfigError, match="unique"):
        build([{"flatten": {"name": "x"}}, {"dense": {"units": 4, "name": "x"}}])
    with pytest.raises(ConfigError, match="'.'"):
        build([{"flatten": {"name": "a.b"}}])


# ---------------------------------------------------------------------------------- init

def _conv_kernel_and_bias(init: str) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = build([{"conv2d": {"filters": 64, "padding": "same"}},
                   {"conv2d": {"filters": 64, "padding": "same"}}, {"global_avg_pool": {}}],
                  in_shape=(64, 4, 4), init=init)
    return model.conv2d_1.conv.weight.detach(), model.conv2d_1.conv.bias.detach()


def test_init_glorot_he_and_torch_differ() -> None:
    fan = 64 * 3 * 3  # fan_in = fan_out for a 64 -> 64, 3x3 conv
    glorot, glorot_bias = _conv_kernel_and_bias("glorot_uniform")
    bound = math.sqrt(6 / (fan + fan))
    assert glorot.abs().max().item() <= bound
    assert glorot.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.03)
    assert torch.count_nonzero(glorot_bias) == 0

    he, he_bias = _conv_kernel_and_bias("he_normal")
    assert he.std().item() == pytest.approx(math.sqrt(2 / fan), rel=0.03)
    assert torch.count_nonzero(he_bias) == 0

    default, default_bias = _conv_kernel_and_bias("torch")
    # torch: kaiming_uniform(a=sqrt(5)) = uniform(+-1/sqrt(fan_in)), std 1/sqrt(3 fan_in).
    assert default.std().item() == pytest.approx(1 / math.sqrt(3 * fan), rel=0.03)
    assert torch.count_nonzero(default_bias) > 0
    assert abs(glorot.std().item() - default.std().item()) > 0.01

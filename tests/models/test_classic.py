"""The classic nets (resnet_cifar, squeezenet, vgg): sizes the papers and reports give, structure, L2."""

from __future__ import annotations

import pytest
import torch
from pydantic import TypeAdapter
from torch import nn

from cnnlab.config import validate_config
from cnnlab.config.schema import ModelConfig
from cnnlab.errors import ConfigError
from cnnlab.models import build_model, l2_penalty, summarize
from cnnlab.models.layers import ConvLayer, DenseLayer
from cnnlab.models.resnet_cifar import ResidualBlock
from cnnlab.models.squeezenet import Fire


def model_config(**fields):
    return TypeAdapter(ModelConfig).validate_python(fields)


def build(in_shape=(3, 32, 32), num_classes=10, **fields) -> nn.Module:
    torch.manual_seed(0)
    return build_model(model_config(**fields), in_shape, num_classes)


# ------------------------------------------------------------------------------ resnet

def test_resnet20_has_the_papers_027m_parameters_and_3_stages_of_3_blocks():
    model = build(name="resnet_cifar", depth=20)
    summary = summarize(model, (3, 32, 32))
    # He et al. 2016, table 6: 0.27M. Keras's resnet_v1 example (convs with biases, 1x1
    # projection shortcuts) prints exactly these numbers.
    assert summary.total == 274_442
    assert summary.trainable == 273_066
    assert [r.name for r in summary.rows] == ["stem", "stage1", "stage2", "stage3", "pool", "head"]
    assert [r.output_shape for r in summary.rows] == [
        (None, 32, 32, 16), (None, 32, 32, 16), (None, 16, 16, 32), (None, 8, 8, 64), (None, 64),
        (None, 10)]
    for index in (1, 2, 3):
        blocks = list(getattr(model, f"stage{index}").children())
        assert len(blocks) == 3 and all(isinstance(b, ResidualBlock) for b in blocks)
    convs = [m for m in model.modules() if isinstance(m, ConvLayer) and m.conv.kernel_size == (3, 3)]
    assert len(convs) + 1 == 20  # 19 weighted 3x3 convs + the output layer


@pytest.mark.parametrize("depth, blocks", [(8, 1), (32, 5), (56, 9)])
def test_resnet_depth_sets_blocks_per_stage(depth, blocks):
    model = build(in_shape=(1, 28, 28), name="resnet_cifar", depth=depth, width=4)
    assert [len(getattr(model, f"stage{i}")) for i in (1, 2, 3)] == [blocks] * 3


def test_projection_shortcuts_only_where_the_shape_changes():
    model = build(name="resnet_cifar", depth=20)
    projecting = [name for name, m in model.named_modules()
                  if isinstance(m, ResidualBlock) and m.projects]
    assert projecting == ["stage2.block1", "stage3.block1"]
    for name in projecting:
        shortcut = model.get_submodule(name).shortcut
        assert shortcut.conv.kernel_size == (1, 1) and shortcut.conv.stride == (2, 2)
    assert not model.stage1.block1.projects  # the stem already has stage1's width


def test_resnet_l2_penalty_equals_the_hand_sum():
    model = build(name="resnet_cifar", depth=8, width=2, l2=1e-3, head_l2=5e-2,
                  in_shape=(1, 8, 8), num_classes=3)
    convs = [m.conv.weight for m in model.modules() if isinstance(m, ConvLayer)]
    assert len(convs) == 1 + 3 * 2 + 2  # stem, 2 per block, 2 projections
    expected = 1e-3 * sum((w ** 2).sum() for w in convs) + 5e-2 * (model.head.linear.weight ** 2).sum()
    penalty = l2_penalty(model)
    assert penalty.item() > 0
    assert penalty.item() == pytest.approx(expected.item(), rel=1e-6)
    # Biases and BatchNorm are not penalised: the default head has no L2.
    default = build(name="resnet_cifar", depth=8, width=2, in_shape=(1, 8, 8), num_classes=3)
    assert default.head.l2 == 0.0
    assert all(m.l2 == 1e-4 for m in default.modules() if isinstance(m, ConvLayer))


def test_resnet_uses_he_normal_by_default():
    model = build(name="resnet_cifar", depth=56, width=16)
    weight = model.stage3.block9.conv2.conv.weight  # fan_in 64 * 9
    assert weight.std().item() == pytest.approx((2 / (64 * 9)) ** 0.5, rel=0.05)


@pytest.mark.parametrize("depth", [21, 4, 30])
def test_bad_depth_is_refused_with_a_clear_message(depth):
    with pytest.raises(ConfigError, match=r"model\.depth.*6n\+2"):
        validate_config({"name": "x", "model": {"name": "resnet_cifar", "depth": depth}})


def test_unknown_option_is_refused():
    with pytest.raises(ConfigError, match="unknown key `model.blocks`"):
        validate_config({"name": "x", "model": {"name": "resnet_cifar", "blocks": 3}})


# -------------------------------------------------------------------------- squeezenet

def test_fire_module_outputs_twice_the_expand_width():
    cfg = model_config(name="squeezenet")
    fire = Fire(32, squeeze=8, expand=24, size=(16, 16), cfg=cfg)
    assert fire.out_channels == 48
    assert fire(torch.zeros(2, 32, 16, 16)).shape == (2, 48, 16, 16)


def test_squeezenet_default_layout_for_32px():
    model = build(name="squeezenet")
    fires = [m for m in model.modules() if isinstance(m, Fire)]
    assert len(fires) == 8
    assert [f.out_channels for f in fires] == [128, 128, 256, 256, 384, 384, 512, 512]
    summary = summarize(model, (3, 32, 32))
    assert [r.name for r in summary.rows] == ["stem", "stage1", "stage2", "stage3", "head"]
    # Two poolings only: 32 -> 16 -> 8 (the ImageNet layout would leave 1x1 or less).
    assert [r.output_shape for r in summary.rows][:4] == [
        (None, 32, 32, 64), (None, 32, 32, 128), (None, 16, 16, 256), (None, 8, 8, 512)]
    assert summary.rows[-1].output_shape == (None, 10)
    assert 0.5e6 < summary.total < 1.0e6


# ---------------------------------------------------------------------------------- vgg

@pytest.mark.parametrize("blocks", [[8], [8, 16], [8, 16, 32, 64]])
def test_vgg_block_count_follows_the_widths(blocks):
    model = build(name="vgg", blocks=blocks, dense=[16])
    names = [name for name, _ in model.named_children()]
    assert names == [f"block{i}" for i in range(1, len(blocks) + 1)] + ["flatten", "fc1", "head"]
    for index, width in enumerate(blocks, 1):
        convs = [m for m in getattr(model, f"block{index}").modules() if isinstance(m, ConvLayer)]
        assert [c.conv.out_channels for c in convs] == [width, width]


def test_vgg_matches_report_003s_sequential_final_net():
    """The same net written as `vgg` and as the recipe's layer list has the same parameters."""
    from cnnlab.config import load_config
    from cnnlab.recipes import list_recipes

    recipe = next(r for r in list_recipes() if r.name == "report003/final_vgg")
    sequential = build_model(load_config(recipe.path).model, (3, 32, 32), 10)
    vgg = build(name="vgg", blocks=[64, 128, 256], batchnorm="before_activation",
                dropout=[0.1, 0.2, 0.5], dense=[128], dense_l2=0.005, dense_batchnorm=True,
                dense_dropout=0.4)
    assert summarize(vgg, (3, 32, 32)).total == summarize(sequential, (3, 32, 32)).total == 1_675_210
    assert l2_penalty(vgg).item() > 0  # the Dense layer's L2 0.005


def test_vgg_options():
    model = build(name="vgg", blocks=[4, 8], convs_per_block=[1, 3], batchnorm=True,
                  pooling="global_avg", dense=[], dropout=0.0)
    assert [len([m for m in b.modules() if isinstance(m, ConvLayer)])
            for b in (model.block1, model.block2)] == [1, 3]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 4
    assert isinstance(model.head, DenseLayer) and model.head.linear.in_features == 8
    with pytest.raises(ConfigError, match="dropout has 1 values for 2 blocks"):
        validate_config({"name": "x", "model": {"name": "vgg", "blocks": [4, 8], "dropout": [0.1]}})


def test_vgg_too_many_pools_for_the_image_is_a_config_error():
    with pytest.raises(ConfigError, match="leaves nothing"):
        build(in_shape=(1, 28, 28), name="vgg", blocks=[4, 4, 4, 4, 4])


def test_resnet_avg2x2_flatten_head_is_report_001s():
    # Report 001: AveragePooling2D() + Flatten on Fashion-MNIST, 28x28x1, depth 20.
    # Stage 3 ends at 7x7x64; the 2x2 valid pool floors to 3x3, so the head sees 576 features.
    model = build(in_shape=(1, 28, 28), name="resnet_cifar", depth=20, pool="avg2x2_flatten")
    summary = summarize(model, (1, 28, 28))
    assert [r.name for r in summary.rows] == ["stem", "stage1", "stage2", "stage3", "pool",
                                              "flatten", "head"]
    assert [r.output_shape for r in summary.rows][3:] == [
        (None, 7, 7, 64), (None, 3, 3, 64), (None, 576), (None, 10)]
    # The global-pool net on 1 channel has 274,442 - 3*3*2*16 = 274,154; the head grows from
    # 64*10 + 10 to 576*10 + 10 weights: +5,120.
    globally = build(in_shape=(1, 28, 28), name="resnet_cifar", depth=20)
    assert summarize(globally, (1, 28, 28)).total == 274_154
    assert summary.total == 274_154 + 5_120
    model.eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        features = model.stage3(model.stage2(model.stage1(model.stem(x))))  # (2, 64, 7, 7)
        # (2, 64, 3, 3) flattened channel-major to (2, 576)
        expected = model.head(torch.nn.functional.avg_pool2d(features, 2).flatten(1))
        torch.testing.assert_close(model(x), expected)


def test_resnet_avg2x2_flatten_refuses_a_last_stage_below_2x2():
    with pytest.raises(ConfigError, match="avg2x2_flatten"):
        build(in_shape=(3, 4, 4), name="resnet_cifar", depth=8, width=2, pool="avg2x2_flatten")

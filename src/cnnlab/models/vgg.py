"""``vgg``: VGG-style nets described by block widths (Simonyan & Zisserman 2014).

Each block ``blockK`` holds ``convs_per_block`` 3x3 'same' convs (``conv1``, ``conv2``, ...)
with BatchNorm before or after the activation if asked, a 2x2 max pool and an optional
dropout, named as in Keras's VGG16 (``block1`` ... with ``conv1`` ... inside). Then
``flatten`` (or ``global_pool``), Dense layers ``fc1``, ``fc2``, ... (Dense, optional
BatchNorm, activation, dropout) and the output layer ``head``. Each of those is one top-level
child, so the Keras-style summary has one row per block.

Report 003's final net with this model::

    model: {name: vgg, blocks: [64, 128, 256], batchnorm: before_activation,
            dropout: [0.1, 0.2, 0.5], dense: [128], dense_l2: 0.005, dense_batchnorm: true,
            dense_dropout: 0.4}
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.config.classic import VGGConfig
from cnnlab.errors import ConfigError
from cnnlab.models.factory import MODELS, InShape
from cnnlab.models.layers import (
    INITIALIZERS,
    ActivationLayer,
    ConvLayer,
    DenseLayer,
    GlobalAvgPoolLayer,
    PoolLayer,
)

Size = tuple[int, int]


def conv_unit(block: nn.Module, prefix: str, in_channels: int, filters: int, *, kernel: int,
              size: Size, activation: str, batchnorm: str, bn_momentum: float, l2: float,
              init: str) -> None:
    """Add a 'same' conv (+ BatchNorm) + activation to ``block`` as ``{prefix}``, ``{prefix}_bn``, ...

    ``batchnorm`` is ``none`` (Conv2D with activation), ``after_activation`` (Conv2D with
    activation, then BatchNorm) or ``before_activation`` (linear Conv2D, BatchNorm,
    Activation), as the ``conv_block`` layer of the sequential model writes them.
    """
    conv_activation = None if batchnorm == "before_activation" else activation
    conv = ConvLayer(in_channels, filters, kernel=(kernel, kernel), stride=(1, 1), padding="same",
                     in_size=size, activation=conv_activation, l2=l2)
    INITIALIZERS.get(init)(conv.conv)
    block.add_module(prefix, conv)
    if batchnorm != "none":
        block.add_module(f"{prefix}_bn", nn.BatchNorm2d(filters, eps=1e-3, momentum=1.0 - bn_momentum))
    if batchnorm == "before_activation":
        block.add_module(f"{prefix}_act", ActivationLayer(activation))


def pooled(size: Size, pool: int, where: str) -> Size:
    """Output size of a 'valid' max pool; a ConfigError when it would leave nothing."""
    out = (size[0] // pool, size[1] // pool)
    if min(out) < 1:
        raise ConfigError(
            f"{where}: a {pool}x{pool} pool of a {size[0]}x{size[1]} map leaves nothing; use "
            "fewer blocks / stages or larger images (data.image_size).")
    return out


class VGGBlock(nn.Sequential):
    """Convs, max pool, dropout."""

    keras_type = "VGGBlock"


class DenseUnit(nn.Sequential):
    """Dense, optional BatchNorm, activation, optional dropout."""

    keras_type = "Dense"


class Vgg(nn.Module):
    """VGG-style net. (Class name chosen so the summary is titled ``vgg``.)"""

    def __init__(self, cfg: VGGConfig, in_shape: InShape, num_classes: int) -> None:
        super().__init__()
        channels, height, width = in_shape
        size: Size = (height, width)
        for index, (filters, convs, rate) in enumerate(
                zip(cfg.blocks, cfg.per_block("convs_per_block"), cfg.per_block("dropout")), 1):
            block = VGGBlock()
            for k in range(1, convs + 1):
                conv_unit(block, f"conv{k}", channels, filters, kernel=cfg.kernel, size=size,
                          activation=cfg.activation, batchnorm=cfg.batchnorm,
                          bn_momentum=cfg.bn_momentum, l2=cfg.l2, init=cfg.init)
                channels = filters
            block.add_module("pool", PoolLayer("max", pool=(2, 2), stride=(2, 2), padding="valid",
                                               in_size=size))
            size = pooled(size, 2, f"model (vgg) block{index}")
            if rate > 0:
                block.add_module("dropout", nn.Dropout(rate))
            self.add_module(f"block{index}", block)

        if cfg.pooling == "flatten":
            self.flatten = nn.Flatten()
            features = channels * size[0] * size[1]
        else:
            self.global_pool = GlobalAvgPoolLayer()
            features = channels
        for index, units in enumerate(cfg.dense, 1):
            unit = DenseUnit()
            linear = DenseLayer(features, units, activation=None if cfg.dense_batchnorm else cfg.activation,
                                l2=cfg.dense_l2)
            INITIALIZERS.get(cfg.init)(linear.linear)
            unit.add_module("dense", linear)
            if cfg.dense_batchnorm:
                unit.add_module("bn", nn.BatchNorm1d(units, eps=1e-3, momentum=1.0 - cfg.bn_momentum))
                unit.add_module("act", ActivationLayer(cfg.activation))
            if cfg.dense_dropout > 0:
                unit.add_module("dropout", nn.Dropout(cfg.dense_dropout))
            self.add_module(f"fc{index}", unit)
            features = units
        self.head = DenseLayer(features, num_classes, activation=None, l2=cfg.output_l2)
        INITIALIZERS.get(cfg.init)(self.head.linear)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self.children():
            x = module(x)
        return x


@MODELS.register("vgg", "VGG-style net by block widths (convs, BatchNorm, pool, dropout per block)")
def build_vgg(cfg: VGGConfig, in_shape: InShape, num_classes: int) -> nn.Module:
    return Vgg(cfg, in_shape, num_classes)

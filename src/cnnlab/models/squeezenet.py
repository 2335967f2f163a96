"""``squeezenet``: SqueezeNet (Iandola et al. 2016) from scratch, sized for 32x32 inputs.

A fire module squeezes with a 1x1 conv to ``s`` channels, then expands with a 1x1 and a 3x3
conv of ``e = expand_ratio * s`` channels each, concatenated to ``2 * e`` channels. The
ImageNet net (v1.1) starts with a stride-2 3x3 conv and a max pool and pools three times,
which leaves nothing of a 32x32 CIFAR image; report 003 wrote it from scratch for 32x32, so
here the stem is a stride-1 3x3 conv with no pool, and a 3x3/2 'same' max pool separates the
stages (32 -> 16 -> 8 with three stages). The classifier is SqueezeNet's: dropout, a 1x1 conv
to the classes and global average pooling; the ReLU the original puts on that conv is left
out, since the output is logits.

Top-level children: ``stem``, ``stage1``... (``fire1``... and the pool before it), ``head``.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.config.classic import SqueezeNetConfig
from cnnlab.models.factory import MODELS, InShape
from cnnlab.models.layers import INITIALIZERS, ConvLayer, GlobalAvgPoolLayer, PoolLayer
from cnnlab.models.vgg import conv_unit

Size = tuple[int, int]


def _unit(in_channels: int, filters: int, kernel: int, size: Size, cfg: SqueezeNetConfig,
          stride: int = 1) -> nn.Sequential:
    """Conv (+ BatchNorm) + ReLU as one module."""
    unit = nn.Sequential()
    if stride == 1:
        conv_unit(unit, "conv", in_channels, filters, kernel=kernel, size=size, activation="relu",
                  batchnorm="before_activation" if cfg.batchnorm else "none",
                  bn_momentum=cfg.bn_momentum, l2=cfg.l2, init=cfg.init)
        return unit
    conv = ConvLayer(in_channels, filters, kernel=(kernel, kernel), stride=(stride, stride),
                     padding="same", in_size=size, activation=None if cfg.batchnorm else "relu",
                     l2=cfg.l2)
    INITIALIZERS.get(cfg.init)(conv.conv)
    unit.add_module("conv", conv)
    if cfg.batchnorm:
        unit.add_module("conv_bn", nn.BatchNorm2d(filters, eps=1e-3, momentum=1.0 - cfg.bn_momentum))
        unit.add_module("conv_act", nn.ReLU())
    return unit


class Fire(nn.Module):
    """Squeeze 1x1 to ``squeeze`` channels; expand 1x1 and 3x3 to ``expand`` each; concatenate."""

    keras_type = "Fire"

    def __init__(self, in_channels: int, squeeze: int, expand: int, size: Size,
                 cfg: SqueezeNetConfig) -> None:
        super().__init__()
        self.squeeze = _unit(in_channels, squeeze, 1, size, cfg)
        self.expand1x1 = _unit(squeeze, expand, 1, size, cfg)
        self.expand3x3 = _unit(squeeze, expand, 3, size, cfg)
        self.out_channels = 2 * expand

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze(x)
        return torch.cat([self.expand1x1(x), self.expand3x3(x)], dim=1)


class FireStage(nn.Sequential):
    keras_type = "FireStage"


class Classifier(nn.Sequential):
    keras_type = "Conv2D+GlobalAveragePooling2D"


class Squeezenet(nn.Module):
    """SqueezeNet for small images. (Class name chosen so the summary is titled ``squeezenet``.)"""

    def __init__(self, cfg: SqueezeNetConfig, in_shape: InShape, num_classes: int) -> None:
        super().__init__()
        channels, height, width = in_shape
        size: Size = (height, width)
        self.stem = _unit(channels, cfg.stem_filters, 3, size, cfg, stride=cfg.stem_stride)
        self.stem.keras_type = "Conv2D"
        size = (-(-size[0] // cfg.stem_stride), -(-size[1] // cfg.stem_stride))
        channels = cfg.stem_filters
        fire_index = 0
        for index, squeezes in enumerate(cfg.stages, 1):
            stage = FireStage()
            if index > 1:
                pool = (cfg.pool_size, cfg.pool_size)
                stage.add_module("pool", PoolLayer("max", pool=pool, stride=(2, 2), padding="same",
                                                   in_size=size))
                size = (-(-size[0] // 2), -(-size[1] // 2))
            for squeeze in squeezes:
                fire_index += 1
                fire = Fire(channels, squeeze, cfg.expand_ratio * squeeze, size, cfg)
                stage.add_module(f"fire{fire_index}", fire)
                channels = fire.out_channels
            self.add_module(f"stage{index}", stage)
        self.head = Classifier()
        if cfg.dropout > 0:
            self.head.add_module("dropout", nn.Dropout(cfg.dropout))
        conv = ConvLayer(channels, num_classes, kernel=(1, 1), stride=(1, 1), padding="valid",
                         in_size=size, activation=None, l2=cfg.l2)
        INITIALIZERS.get(cfg.init)(conv.conv)
        self.head.add_module("conv", conv)
        self.head.add_module("global_pool", GlobalAvgPoolLayer())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self.children():
            x = module(x)
        return x


@MODELS.register("squeezenet", "SqueezeNet (fire modules) for small images, from scratch")
def build_squeezenet(cfg: SqueezeNetConfig, in_shape: InShape, num_classes: int) -> nn.Module:
    return Squeezenet(cfg, in_shape, num_classes)

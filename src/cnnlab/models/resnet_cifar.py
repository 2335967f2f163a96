"""``resnet_cifar``: ResNet v1 for small images (He et al. 2016, section 4.2), depth 6n+2.

Written as Keras's CIFAR-10 ``resnet_v1`` example (the code report 001 used): a 3x3 conv +
BatchNorm + ReLU stem of ``width`` filters, three stages of n residual blocks with
``width``, ``2 * width`` and ``4 * width`` filters, each block ``conv3x3 - BN - ReLU - conv3x3
- BN``, added to the shortcut, then ReLU. The first block of stages 2 and 3 uses stride 2, and
its shortcut is a 1x1 stride-2 conv (projection, no BatchNorm); every other shortcut is the
identity. Then global average pooling (or, with ``pool: avg2x2_flatten``, report 001's
Keras ``AveragePooling2D()`` + ``Flatten``), optional dropout and the Dense output layer.

Convs keep their biases (Keras's default), so ``depth: 20`` with 10 classes has 274,442
parameters counted as Keras counts them (273,066 trainable plus 1,376 BatchNorm statistics):
the 0.27M of He et al. Conv kernels carry ``l2`` the way :mod:`cnnlab.models.layers` stores it,
so :func:`cnnlab.models.l2_penalty` adds it to the loss.

Top-level children are ``stem``, ``stage1``..``stage3``, ``pool``, (``flatten``),
(``dropout``) and ``head``, one summary row each.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cnnlab.config.classic import ResNetCifarConfig
from cnnlab.errors import ConfigError
from cnnlab.models.factory import MODELS, InShape
from cnnlab.models.layers import (INITIALIZERS, ConvLayer, DenseLayer, GlobalAvgPoolLayer,
                                  PoolLayer)

Size = tuple[int, int]


def _batchnorm(channels: int, cfg: ResNetCifarConfig) -> nn.BatchNorm2d:
    # Keras: momentum is the weight of the old statistics, epsilon 1e-3.
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=1.0 - cfg.bn_momentum)


def _conv(in_channels: int, filters: int, kernel: int, stride: int, size: Size,
          cfg: ResNetCifarConfig) -> ConvLayer:
    conv = ConvLayer(in_channels, filters, kernel=(kernel, kernel), stride=(stride, stride),
                     padding="same", in_size=size, activation=None, l2=cfg.l2)
    INITIALIZERS.get(cfg.init)(conv.conv)
    return conv


def _downsampled(size: Size, stride: int) -> Size:
    """TF 'same' output size."""
    return (math.ceil(size[0] / stride), math.ceil(size[1] / stride))


class Stem(nn.Module):
    """Conv 3x3 (same) - BatchNorm - ReLU."""

    keras_type = "Conv2D+BN+ReLU"

    def __init__(self, in_channels: int, filters: int, size: Size, cfg: ResNetCifarConfig) -> None:
        super().__init__()
        self.conv = _conv(in_channels, filters, 3, 1, size, cfg)
        self.bn = _batchnorm(filters, cfg)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class ResidualBlock(nn.Module):
    """``relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))``; the shortcut projects when the shape changes."""

    keras_type = "ResidualBlock"

    def __init__(self, in_channels: int, filters: int, stride: int, size: Size,
                 cfg: ResNetCifarConfig) -> None:
        super().__init__()
        out_size = _downsampled(size, stride)
        self.conv1 = _conv(in_channels, filters, 3, stride, size, cfg)
        self.bn1 = _batchnorm(filters, cfg)
        self.relu1 = nn.ReLU()
        self.conv2 = _conv(filters, filters, 3, 1, out_size, cfg)
        self.bn2 = _batchnorm(filters, cfg)
        self.shortcut: nn.Module
        if stride != 1 or in_channels != filters:
            self.shortcut = _conv(in_channels, filters, 1, stride, size, cfg)
        else:
            self.shortcut = nn.Identity()
        self.relu = nn.ReLU()
        self.out_size = out_size

    @property
    def projects(self) -> bool:
        return not isinstance(self.shortcut, nn.Identity)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu(y + self.shortcut(x))


class ResidualStage(nn.Sequential):
    """``n`` residual blocks of one width (``block1``, ``block2``, ...)."""

    keras_type = "ResidualStage"


class ResnetCifar(nn.Module):
    """ResNet v1 for small images. (Class name chosen so the summary is titled ``resnet_cifar``.)"""

    def __init__(self, cfg: ResNetCifarConfig, in_shape: InShape, num_classes: int) -> None:
        super().__init__()
        channels, height, width = in_shape
        size: Size = (height, width)
        self.stem = Stem(channels, cfg.width, size, cfg)
        in_channels = cfg.width
        for index in range(3):
            filters = cfg.width * 2 ** index
            blocks: list[tuple[str, nn.Module]] = []
            for b in range(cfg.blocks_per_stage):
                stride = 2 if index > 0 and b == 0 else 1
                block = ResidualBlock(in_channels, filters, stride, size, cfg)
                blocks.append((f"block{b + 1}", block))
                in_channels, size = filters, block.out_size
            stage = ResidualStage()
            for name, block in blocks:
                stage.add_module(name, block)
            self.add_module(f"stage{index + 1}", stage)
        features = self._add_pool(cfg, in_channels, size)
        if cfg.dropout > 0:
            self.dropout = nn.Dropout(cfg.dropout)
        self.head = DenseLayer(features, num_classes, activation=None, l2=cfg.head_l2)
        INITIALIZERS.get(cfg.init)(self.head.linear)

    def _add_pool(self, cfg: ResNetCifarConfig, channels: int, size: Size) -> int:
        """Add the pooling children (forward runs children in order); return the head's inputs."""
        if cfg.pool == "global_avg":
            self.pool = GlobalAvgPoolLayer()  # (B, C, H, W) -> (B, C)
            return channels
        if min(size) < 2:
            raise ConfigError(f"model.pool: avg2x2_flatten needs the last stage's output to be at "
                              f"least 2x2, but this input gives {size[0]}x{size[1]}; use "
                              f"pool: global_avg or a larger data.image_size.")
        # Keras AveragePooling2D() defaults: 2x2 window, stride 2, 'valid' (odd sizes floor).
        self.pool = PoolLayer("avg", pool=(2, 2), stride=(2, 2), padding="valid", in_size=size)
        self.flatten = nn.Flatten()  # (B, C, H//2, W//2) -> (B, C * H//2 * W//2)
        return channels * (size[0] // 2) * (size[1] // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self.children():
            x = module(x)
        return x


@MODELS.register("resnet_cifar", "ResNet v1 for small images (He et al. 2016), depth 6n+2")
def build_resnet_cifar(cfg: ResNetCifarConfig, in_shape: InShape, num_classes: int) -> nn.Module:
    return ResnetCifar(cfg, in_shape, num_classes)

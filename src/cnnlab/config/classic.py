"""Config sections of the classic nets (CIFAR ResNets, SqueezeNet, VGG-style)."""

from __future__ import annotations

from typing import Literal

from cnnlab.config.base import Strict


class ResNetCifarConfig(Strict):
    """ResNet v1 for small images (He et al. 2016, section 4.2): depth 6n+2."""

    name: Literal["resnet_cifar"]


class SqueezeNetConfig(Strict):
    """SqueezeNet (fire modules) sized for 32x32 inputs, trained from scratch."""

    name: Literal["squeezenet"]


class VGGConfig(Strict):
    """VGG-style net described by its block widths."""

    name: Literal["vgg"]

"""The layer vocabulary of ``model.layers`` and of a backbone's ``model.head``: Keras layer
names as tagged pydantic models (``LayerSpec``). Shared by :mod:`cnnlab.config.schema` and
:mod:`cnnlab.config.backbone`, which is why it lives apart from both."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, model_validator

from cnnlab.config.base import Strict
from cnnlab.config.common import Activation, Fraction, IntPair, Padding, PositiveInt


class _Layer(Strict):
    name: str | None = Field(None, description="layer name in the summary (Keras-style default)")


class Conv2D(_Layer):
    type: Literal["conv2d"]
    filters: PositiveInt
    kernel: IntPair = 3
    strides: IntPair = 1
    padding: Padding = "valid"
    activation: Activation | None = None
    use_bias: bool = True
    l2: Annotated[float, Field(ge=0.0)] = 0.0


class MaxPool2D(_Layer):
    type: Literal["maxpool2d"]
    pool: IntPair = 2
    strides: IntPair | None = None
    padding: Padding = "valid"


class AvgPool2D(_Layer):
    type: Literal["avgpool2d"]
    pool: IntPair = 2
    strides: IntPair | None = None
    padding: Padding = "valid"


class GlobalAvgPool(_Layer):
    type: Literal["global_avg_pool"]


class BatchNorm(_Layer):
    type: Literal["batchnorm"]
    momentum: Annotated[float, Field(gt=0.0, lt=1.0)] = Field(
        0.99, description="Keras meaning: weight of the old running statistics")
    epsilon: Annotated[float, Field(gt=0.0)] = 1e-3


class ActivationLayer(_Layer):
    type: Literal["activation"]
    activation: Activation


class Dropout(_Layer):
    type: Literal["dropout"]
    rate: Fraction


class Flatten(_Layer):
    type: Literal["flatten"]


class Dense(_Layer):
    type: Literal["dense"]
    units: PositiveInt
    activation: Activation | None = None
    use_bias: bool = True
    l2: Annotated[float, Field(ge=0.0)] = 0.0


class ConvBlock(_Layer):
    """``convs`` convolutions, then optional pooling and dropout, repeated once per width.

    ``filters: [32, 64, 128]`` writes three blocks; ``dropout`` may be one rate or one per block.
    ``batchnorm`` places BatchNorm before or after the activation (report 003 puts it before
    ReLU, report 002 after).
    """

    type: Literal["conv_block"]
    filters: PositiveInt | list[PositiveInt]
    convs: PositiveInt = 2
    kernel: IntPair = 3
    padding: Padding = "same"
    activation: Activation = "relu"
    batchnorm: Literal["none", "before_activation", "after_activation"] = "none"
    bn_momentum: Annotated[float, Field(gt=0.0, lt=1.0)] = Field(
        0.99, description="Keras meaning; lower it (e.g. 0.9) when an epoch has few steps")
    pool: IntPair | None = 2
    dropout: Fraction | list[Fraction] = 0.0
    l2: Annotated[float, Field(ge=0.0)] = 0.0

    @model_validator(mode="after")
    def _dropout_per_block(self) -> "ConvBlock":
        widths = self.filters if isinstance(self.filters, list) else [self.filters]
        if isinstance(self.dropout, list) and len(self.dropout) != len(widths):
            raise ValueError(f"dropout has {len(self.dropout)} rates for {len(widths)} blocks")
        return self


LayerSpec = Annotated[
    Union[Conv2D, MaxPool2D, AvgPool2D, GlobalAvgPool, BatchNorm, ActivationLayer, Dropout,
          Flatten, Dense, ConvBlock],
    Field(discriminator="type"),
]

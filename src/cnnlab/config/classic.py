"""Config sections of the classic nets (CIFAR ResNets, SqueezeNet, VGG-style).

Each is selected by ``model.name`` and built by the module of the same name under
:mod:`cnnlab.models`. Defaults are what a Keras user writing the net by hand would use
(``he_normal`` for the ResNet as the Keras CIFAR example has it, ``glorot_uniform`` elsewhere,
BatchNorm momentum 0.99 and epsilon 1e-3 in Keras's meaning).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from cnnlab.config.base import Strict
from cnnlab.config.common import Fraction as _Fraction
from cnnlab.config.common import PositiveInt as _PositiveInt

_NonNegative = Annotated[float, Field(ge=0.0)]
_Init = Literal["he_normal", "glorot_uniform", "torch"]
_BatchNormPlacement = Literal["none", "before_activation", "after_activation"]
_BN_MOMENTUM_DOC = "BatchNorm momentum, Keras meaning: weight of the old running statistics"


class ResNetCifarConfig(Strict):
    """ResNet v1 for small images (He et al. 2016, section 4.2): depth 6n+2.

    A 3x3 conv stem, three stages of n residual blocks (widths w, 2w, 4w; the first block of
    stages 2 and 3 halves the size with stride 2 and a 1x1 projection shortcut), global
    average pooling and the Dense output layer: Keras's ``resnet_v1`` CIFAR example, which
    report 001 wrote (he_normal, L2 1e-4 on the conv kernels). ``depth: 20`` has 0.27M
    parameters.
    """

    name: Literal["resnet_cifar"]
    depth: _PositiveInt = Field(
        20, description="layers with weights, 6n+2: 20, 32, 44, 56, 110 (n blocks per stage)")
    width: _PositiveInt = Field(16, description="filters of the stem and the first stage; the "
                                "second and third stages use 2x and 4x")
    l2: _NonNegative = Field(1e-4, description="Keras kernel L2 of every conv (shortcuts too)")
    head_l2: _NonNegative = Field(
        0.0, description="kernel L2 of the output Dense layer (the Keras example has none)")
    dropout: _Fraction = Field(0.0, description="dropout rate before the output layer")
    init: _Init = Field("he_normal", description="kernel initialiser of convs and the output layer")
    bn_momentum: Annotated[float, Field(gt=0.0, lt=1.0)] = Field(0.99, description=_BN_MOMENTUM_DOC)
    pool: Literal["global_avg", "avg2x2_flatten"] = Field(
        "global_avg", description="global_avg: GlobalAveragePooling2D (He et al.); "
        "avg2x2_flatten: AveragePooling2D() (2x2, stride 2, valid) + Flatten, as report 001's "
        "Keras code had it (28x28 input: 7x7x64 -> 3x3x64 -> 576 features)")

    @field_validator("depth")
    @classmethod
    def _depth_is_6n_plus_2(cls, depth: int) -> int:
        if depth < 8 or (depth - 2) % 6 != 0:
            below = max(8, (depth - 2) // 6 * 6 + 2)
            raise ValueError(
                f"depth must be 6n+2 with n >= 1 (e.g. 20, 32, 44, 56, 110): 2 layers for "
                f"the stem and the output plus 3 stages of n blocks of 2 convs; {depth} is not "
                f"(nearest: {below} or {below + 6})")
        return depth

    @property
    def blocks_per_stage(self) -> int:
        return (self.depth - 2) // 6


class SqueezeNetConfig(Strict):
    """SqueezeNet (fire modules) sized for 32x32 inputs, trained from scratch.

    Iandola et al. 2016 (v1.1 layout): a fire module squeezes with a 1x1 conv to ``s``
    channels, then expands with a 1x1 and a 3x3 conv of ``expand_ratio * s`` channels each,
    concatenated (``2 * expand_ratio * s`` out). For small images the stem is a stride-1 3x3
    conv without pooling and the stages are separated by a 3x3/2 max pool (32 -> 16 -> 8),
    as report 003 had to write it; the classifier is a 1x1 conv to the classes and global
    average pooling (no ReLU on the logits).
    """

    name: Literal["squeezenet"]
    stem_filters: _PositiveInt = Field(64, description="filters of the 3x3 stem conv")
    stem_stride: Literal[1, 2] = Field(1, description="stride of the stem (2 as in ImageNet "
                                       "SqueezeNet, for large images)")
    stages: list[list[_PositiveInt]] = Field(
        default_factory=lambda: [[16, 16], [32, 32], [48, 48, 64, 64]],
        description="squeeze widths of the fire modules, one list per stage; a max pool "
                    "separates stages")
    expand_ratio: _PositiveInt = Field(4, description="each expand branch has expand_ratio x "
                                       "squeeze filters (SqueezeNet: 4)")
    pool_size: Literal[2, 3] = Field(3, description="max pool between stages (stride 2, 'same')")
    batchnorm: bool = Field(False, description="BatchNorm before each ReLU (not in the original; "
                            "helps from scratch)")
    bn_momentum: Annotated[float, Field(gt=0.0, lt=1.0)] = Field(0.99, description=_BN_MOMENTUM_DOC)
    dropout: _Fraction = Field(0.5, description="dropout before the classifier conv (SqueezeNet: 0.5)")
    l2: _NonNegative = Field(0.0, description="Keras kernel L2 of every conv")
    init: _Init = Field("glorot_uniform", description="kernel initialiser (Keras default)")

    @field_validator("stages")
    @classmethod
    def _stages_not_empty(cls, stages: list[list[int]]) -> list[list[int]]:
        if not stages or any(not stage for stage in stages):
            raise ValueError("stages needs at least one stage of at least one fire module, "
                             "e.g. [[16, 16], [32, 32], [48, 48, 64, 64]]")
        return stages


class VGGConfig(Strict):
    """VGG-style net described by its block widths (Simonyan & Zisserman 2014).

    Each block is ``convs_per_block`` 3x3 'same' convs of its width (with BatchNorm if set),
    a 2x2 max pool and optional dropout; then ``flatten`` (or global average pooling), the
    Dense layers of ``dense`` (each with optional BatchNorm and dropout) and the output
    layer. Report 003's final net is ``blocks: [64, 128, 256], batchnorm:
    before_activation, dropout: [0.1, 0.2, 0.5], dense: [128], dense_l2: 0.005,
    dense_batchnorm: true, dense_dropout: 0.4``.
    """

    name: Literal["vgg"]
    blocks: list[_PositiveInt] = Field(
        default_factory=lambda: [64, 128, 256], description="conv widths, one per block")
    convs_per_block: _PositiveInt | list[_PositiveInt] = Field(
        2, description="convs in each block (one number, or one per block)")
    kernel: _PositiveInt = Field(3, description="conv kernel size")
    activation: Literal["relu", "elu", "gelu", "leaky_relu", "selu", "swish", "silu", "tanh"] = "relu"
    batchnorm: _BatchNormPlacement = Field(
        "none", description="BatchNorm after each conv, before or after its activation; "
                            "true = before_activation, false = none")
    bn_momentum: Annotated[float, Field(gt=0.0, lt=1.0)] = Field(0.99, description=_BN_MOMENTUM_DOC)
    dropout: _Fraction | list[_Fraction] = Field(
        0.0, description="dropout after each block's pool (one rate, or one per block)")
    l2: _NonNegative = Field(0.0, description="Keras kernel L2 of the convs")
    pooling: Literal["flatten", "global_avg"] = Field(
        "flatten", description="how the last block's maps become features")
    dense: list[_PositiveInt] = Field(
        default_factory=lambda: [512], description="widths of the Dense layers before the output")
    dense_batchnorm: bool = Field(False, description="BatchNorm between each Dense layer and its "
                                  "activation (as report 003's head)")
    dense_dropout: _Fraction = Field(0.5, description="dropout after each Dense layer")
    dense_l2: _NonNegative = Field(0.0, description="Keras kernel L2 of the Dense layers")
    output_l2: _NonNegative = Field(0.0, description="Keras kernel L2 of the output layer")
    init: _Init = Field("glorot_uniform", description="kernel initialiser (Keras default)")

    @field_validator("batchnorm", mode="before")
    @classmethod
    def _bool_batchnorm(cls, value: Any) -> Any:
        if value is True:
            return "before_activation"
        if value is False or value is None:
            return "none"
        return value

    @model_validator(mode="after")
    def _one_value_per_block(self) -> "VGGConfig":
        if not self.blocks:
            raise ValueError("blocks needs at least one width, e.g. [64, 128, 256]")
        for key in ("convs_per_block", "dropout"):
            value = getattr(self, key)
            if isinstance(value, list) and len(value) != len(self.blocks):
                raise ValueError(f"{key} has {len(value)} values for {len(self.blocks)} blocks "
                                 f"{self.blocks}; give one value or one per block")
        return self

    def per_block(self, key: str) -> list[Any]:
        value = getattr(self, key)
        return list(value) if isinstance(value, list) else [value] * len(self.blocks)

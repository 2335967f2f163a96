"""Config section of ``fastnet``: the CIFAR-10 speed-record family (airbench-style)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from cnnlab.config.base import Strict


class FastNetConfig(Strict):
    """Patch-whitening stem, conv groups (conv, pool, BN, GELU, conv, BN, GELU), scaled linear head.

    Widths follow airbench94 (Jordan 2024): [64, 256, 256] reaches ~94% on CIFAR-10 with its
    training recipe; smaller widths trade accuracy for speed.
    """

    name: Literal["fastnet"]
    widths: list[Annotated[int, Field(gt=0)]] = Field(
        default_factory=lambda: [64, 256, 256], description="output channels of each conv group")
    whiten_kernel: Annotated[int, Field(ge=1, le=5)] = Field(
        2, description="patch size of the frozen whitening stem (0 = no stem)")
    whiten_width: Annotated[int, Field(ge=1)] | None = Field(
        None, description="stem channels; default 2 * C * k * k (each eigenvector and its negative)")
    whiten_eps: Annotated[float, Field(gt=0)] = 5e-4
    whiten_bias_epochs: Annotated[int, Field(ge=0)] | None = Field(
        None, description="train the stem's bias only for this many epochs, then freeze it, which "
        "also skips the first conv's input gradient (airbench: 3); null = always train it")
    bn_momentum: Annotated[float, Field(gt=0.0, lt=1.0)] = Field(
        0.6, description="Keras meaning: weight of the old running statistics")
    bn_frozen_scale: bool = Field(True, description="BatchNorm scale fixed at 1, only the bias learns")
    dirac_init: bool = Field(True, description="first half of each conv's filters start as identity")
    head_scale: Annotated[float, Field(gt=0)] = Field(
        1 / 9, description="multiplies the logits (airbench94: 1/9; airbench94_muon: 1/256)")
    head_init_std: Annotated[float, Field(gt=0)] | None = Field(
        None, description="rescale the head's initial weights to this standard deviation "
        "(airbench94_muon: 1); null keeps PyTorch's default")

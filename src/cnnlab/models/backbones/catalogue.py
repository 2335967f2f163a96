"""Which backbones exist: ``model.backbone`` names checked against timm and torchvision (with
close names on a typo), and the listing behind ``cnnlab models --backbones [PATTERN]`` with
whether each one's pretrained weights are on this machine (the caches a run reads, asked not
to download)."""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass

from cnnlab.config.backbone import BackboneModelConfig
from cnnlab.errors import ConfigError
from cnnlab.models.backbones.packages import PREFIX, WEIGHT_PACKAGES, package_file
from cnnlab.models.backbones.weights import timm_weights, torchvision_weights


def _close(name: str, choices: list[str]) -> str:
    near = difflib.get_close_matches(name, choices, n=5, cutoff=0.5)
    return f" Close names: {', '.join(near)}." if near else ""


def check_arch(cfg: BackboneModelConfig) -> None:
    if cfg.source == "timm":
        import timm

        if not timm.is_model(cfg.arch):
            raise ConfigError(f"model.backbone: timm has no model {cfg.arch!r} (see "
                              f"timm.list_models()).{_close(cfg.arch, timm.list_models())}")
    elif cfg.source == "torchvision":
        import torchvision

        names = torchvision.models.list_models(module=torchvision.models)
        if cfg.arch not in names:
            raise ConfigError(f"model.backbone: torchvision has no classification model "
                              f"{cfg.arch!r}.{_close(cfg.arch, names)}")


@dataclass(frozen=True)
class BackboneName:
    name: str  # e.g. timm:mobilenetv2_100, what model.backbone takes
    # offline (cached here) | offline (pretrained: package:NAME) (an installed pip package
    # holds them) | download (the library has them) | none
    weights: str


def _weights_state(lookup, arch: str, spec: str) -> str:
    try:
        found = lookup(arch, spec, fetch=False)
    except ConfigError:
        return "none"
    return "offline" if found.path is not None else "download"


def _installed_packages() -> dict[str, str]:
    """timm arch -> the ``model.pretrained`` value of an installed weights package for it."""
    installed = {}
    for name in WEIGHT_PACKAGES.names():
        entry = WEIGHT_PACKAGES.get(name)
        try:
            if package_file(name, entry, required=False) is not None:
                installed[entry.arch] = f"{PREFIX}{name}"
        except ConfigError:  # installed without its weights file: not usable offline
            continue
    return installed


def list_backbones(pattern: str = "*") -> list[BackboneName]:
    """Backbones whose ``source:name`` or bare name matches the glob ``pattern``."""
    import timm
    import torchvision

    def wanted(source: str, arch: str) -> bool:
        return fnmatch.fnmatch(f"{source}:{arch}", pattern) or fnmatch.fnmatch(arch, pattern)

    rows = []
    packaged = _installed_packages()
    for arch in timm.list_models():
        if wanted("timm", arch):
            state = _weights_state(timm_weights, arch, f"timm:{arch}")
            if state != "offline" and arch in packaged:
                state = f"offline (pretrained: {packaged[arch]})"
            rows.append(BackboneName(f"timm:{arch}", state))
    for arch in torchvision.models.list_models(module=torchvision.models):
        if wanted("torchvision", arch):
            rows.append(BackboneName(f"torchvision:{arch}", _weights_state(
                torchvision_weights, arch, f"torchvision:{arch}")))
    return rows

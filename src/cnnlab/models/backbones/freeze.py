"""Freezing and unfreezing by layers: ``unfreeze``/``finetune.unfreeze`` selections over the
layer list, the coarse stages that get one learning rate each, and the two-phase plan."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from torch import nn

from cnnlab.config.backbone import LayerSelection
from cnnlab.errors import ConfigError


def select_layers(layers: list[str], selection: LayerSelection | str, where: str) -> list[str]:
    if selection == "all":
        return list(layers)
    assert isinstance(selection, LayerSelection)
    if selection.last is not None:
        return layers[len(layers) - selection.last:] if selection.last else []
    if selection.range is not None:
        start, stop = selection.range
        return layers[start:stop]
    chosen = []
    for prefix in selection.stages or []:
        hits = [n for n in layers if n == prefix or n.startswith(prefix + ".")]
        if not hits:
            tops = list(dict.fromkeys(n.split(".")[0] for n in layers))
            raise ConfigError(f"{where}.stages: no backbone layer is named {prefix!r} or starts "
                              f"with {prefix + '.'!r}; top-level names: {', '.join(tops)}.")
        chosen += hits
    return [n for n in layers if n in set(chosen)]


def _matcher_texts(matcher: Any) -> Any:
    """For a timm dict ``group_matcher``: name -> the text its stage regex matched (or None)."""
    if not isinstance(matcher, dict):
        return lambda name: None
    patterns = []
    for spec in matcher.values():
        if spec is None:
            continue
        for entry in (spec if isinstance(spec, (list, tuple)) else [(spec, None)]):
            patterns.append(re.compile(entry[0]))

    def text(name: str) -> str | None:
        for pattern in patterns:
            found = pattern.match(name)
            if found:
                return found.group(0).rstrip(".") or None
        return None
    return text


def layer_stages(model: nn.Module, layers: list[str], source: str) -> list[tuple[str, list[str]]]:
    """Coarse layer groups in forward order: timm's ``group_matcher(coarse=True)`` where the
    model has one, else top-level modules (``features``/``blocks``/``stages`` split one level).

    A stage is named by what its members share (``layer4``, ``stages.2``, ``blocks.6``),
    joined with ``+`` where a group spans several modules (``conv_stem+bn1``).
    """
    groups: dict[Any, list[str]] = {}
    matcher = None
    if source == "timm" and hasattr(model, "group_matcher"):
        try:
            matcher = model.group_matcher(coarse=True)
        except Exception:
            matcher = None
    if matcher is not None:
        from timm.models._manipulate import group_with_matcher

        groups = dict(group_with_matcher(((n, n) for n in layers), matcher, return_values=True))
    else:
        for name in layers:
            parts = name.split(".")
            split = parts[0] in ("features", "blocks", "stages") and len(parts) >= 2
            groups.setdefault(".".join(parts[:2]) if split else parts[0], []).append(name)
    text = _matcher_texts(matcher)
    position = {n: i for i, n in enumerate(layers)}
    stages = []
    for key, members in groups.items():
        members = sorted(members, key=position.__getitem__)
        if matcher is not None:
            key = "+".join(dict.fromkeys(text(m) or m.split(".")[0] for m in members))
        stages.append((key, members))
    stages.sort(key=lambda s: position[s[1][0]])
    return stages


@dataclass
class FinetunePlan:
    frozen_epochs: int
    layers: list[str]  # unfrozen at the start of epoch frozen_epochs + 1
    backbone_lr: float | None
    lr_decay: float
    applied_at_epoch: int | None = None  # 1-based epoch at which they were unfrozen

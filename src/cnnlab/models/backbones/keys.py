"""Reading a weights file and fitting its keys to a backbone: a state dict from .safetensors
or a torch file (``weights_only=True``), loaded under whatever common prefix its keys carry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.errors import ConfigError


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors, or from a torch file with ``weights_only=True``."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"model.pretrained: cannot read {path} as a state dict "
                          f"({type(exc).__name__}: {str(exc).splitlines()[0]}).") from None
    for key in ("state_dict", "model", "model_state_dict"):  # common checkpoint wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"model.pretrained: {path} does not hold a state dict (name -> tensor).")
    return state


def load_matching(module: nn.Module, state: dict[str, torch.Tensor], what: str) -> dict[str, Any]:
    """Load ``state`` into ``module``, whatever common prefix the file's keys carry.

    The prefix that matches most of the module's keys is used (``""``, ``net.backbone.model.``,
    ``module.``, ...); keys the module lacks (a classifier, a head) are ignored, every tensor
    the module has must be found with the right shape.
    """
    target = module.state_dict()
    prefixes: dict[str, int] = {}
    by_tail: dict[str, list[str]] = {}
    for key in state:
        by_tail.setdefault(".".join(key.split(".")[-2:]), []).append(key)
    for name in target:
        for key in by_tail.get(".".join(name.split(".")[-2:]), []):
            if key.endswith(name) and (len(key) == len(name) or key[-len(name) - 1] == "."):
                prefix = key[: len(key) - len(name)]
                prefixes[prefix] = prefixes.get(prefix, 0) + 1
    prefix = max(prefixes, key=lambda p: (prefixes[p], -len(p))) if prefixes else ""
    picked = {k[len(prefix):]: v for k, v in state.items()
              if k.startswith(prefix) and k[len(prefix):] in target}
    missing = [k for k in target if k not in picked and not k.endswith("num_batches_tracked")]
    if missing:
        sample = ", ".join(list(state)[:4])
        raise ConfigError(
            f"{what}: {len(missing)} of the backbone's {len(target)} tensors are not in the file "
            f"(e.g. {', '.join(missing[:3])}); the file's keys look like {sample}. It must be a "
            "state dict of the same architecture.")
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(target[k].shape)}" for k, v in picked.items()
             if v.shape != target[k].shape]
    if wrong:
        raise ConfigError(f"{what}: tensor shapes differ from the backbone's: {'; '.join(wrong[:3])}.")
    module.load_state_dict(picked, strict=False)
    return {"prefix": prefix, "loaded": len(picked), "ignored": len(state) - len(picked)}


def convert_by_order(state: dict[str, torch.Tensor], template: dict[str, torch.Tensor],
                     what: str) -> dict[str, torch.Tensor]:
    """Rename ``state`` to the keys of ``template`` (a full model's state dict), tensor by tensor
    in order, for files written by another implementation of the same architecture.

    Both must list the same modules in the same (forward) order, as lukemelas-style
    EfficientNet files and timm's EfficientNet do. BatchNorm step counters are left out (not
    every file has them). Any difference in the number of tensors, a shape, or the kind of
    tensor (``weight``, ``bias``, ``running_mean``, ...) refuses the whole file with what
    differed: a partial or shifted mapping would load silently and give wrong features.
    """
    def tensors(d: dict[str, torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
        return [(k, v) for k, v in d.items() if not k.endswith("num_batches_tracked")]

    source, target = tensors(state), tensors(template)
    if len(source) != len(target):
        raise ConfigError(f"{what}: the file holds {len(source)} tensors but the model has "
                          f"{len(target)}; it is not a state dict of this architecture "
                          f"(first keys: {', '.join(k for k, _ in source[:3])}).")
    converted: dict[str, torch.Tensor] = {}
    for index, ((key, value), (name, expected)) in enumerate(zip(source, target)):
        kind, expected_kind = key.rsplit(".", 1)[-1], name.rsplit(".", 1)[-1]
        if tuple(value.shape) != tuple(expected.shape) or kind != expected_kind:
            raise ConfigError(
                f"{what}: tensor {index} of the file, {key} {tuple(value.shape)}, does not match "
                f"the model's tensor {index}, {name} {tuple(expected.shape)}; the file is not "
                "this architecture in the same module order, so nothing was loaded.")
        converted[name] = value
    return converted

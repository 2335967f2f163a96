"""The built module :class:`BackboneNet`: resizing, the extractor, the head; its freezing
switches, optimizer groups, and what a run records about it (metrics.json, layers.json,
summary.txt)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from cnnlab.models.backbones.features import FeatureExtractor, direct_params
from cnnlab.models.backbones.freeze import FinetunePlan
from cnnlab.models.factory import InShape
from cnnlab.models.summary import keras_shape_tuple


class BackboneNet(nn.Module):
    """Optional resizing, the feature extractor, then the head layers as direct children."""

    def __init__(self, *, resizing: nn.Module | None, backbone: FeatureExtractor,
                 head: OrderedDict[str, nn.Module], in_channels: int, bn: str) -> None:
        super().__init__()
        if resizing is not None:
            self.resizing = resizing
        self.backbone = backbone
        for name, module in head.items():
            self.add_module(name, module)
        self.in_channels = in_channels
        self.bn_frozen = bn == "frozen"
        # Filled in by the builder:
        self.spec = backbone.keras_type
        self.layer_names: list[str] = []
        self.stages: list[tuple[str, list[str]]] = []
        self.input_normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None
        self.info: dict[str, Any] = {}
        self.finetune: FinetunePlan | None = None
        self.initial_trainable: list[str] = []
        self.initial_counts: dict[str, int] = {}

    # -- forward and modes ------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.in_channels:
            if x.shape[1] != 1:
                raise ValueError(f"{self.spec} takes {self.in_channels}-channel images, got "
                                 f"{x.shape[1]} channels")
            x = x.expand(-1, self.in_channels, -1, -1)  # grayscale -> RGB
        for module in self.children():
            x = module(x)
        return x

    def train(self, mode: bool = True) -> BackboneNet:
        super().train(mode)
        if mode and self.bn_frozen:
            for module in self.backbone.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    params = direct_params(module)
                    if params and not any(p.requires_grad for p in params):
                        module.eval()
        return self

    # -- layers and freezing ----------------------------------------------------------
    def layer(self, name: str) -> nn.Module:
        return self.backbone.model.get_submodule(name)

    def set_trainable(self, names: list[str], trainable: bool = True) -> None:
        for name in names:
            for p in direct_params(self.layer(name)):
                p.requires_grad_(trainable)
        if self.training:
            self.train()  # BatchNorm modes follow

    def trainable_layers(self) -> list[str]:
        return [n for n in self.layer_names
                if any(p.requires_grad for p in direct_params(self.layer(n)))]

    def start_finetune(self, epoch: int) -> list[str]:
        """Unfreeze the plan's layers at (0-based) ``epoch`` (``frozen_epochs``, or later when
        a resumed run starts after it); returns the names that were frozen until now."""
        plan = self.finetune
        assert plan is not None
        before = set(self.trainable_layers())
        self.set_trainable(plan.layers, True)
        # The schedule's epoch, also when a resumed run starts later than it.
        plan.applied_at_epoch = plan.frozen_epochs + 1
        return [n for n in plan.layers if n not in before]

    def lr_groups(self, base_lr: float) -> list[dict] | None:
        """Optimizer param groups: the head at ``base_lr``, one group per backbone stage at the
        finetune LR (decayed towards the input). None without a finetune section."""
        plan = self.finetune
        if plan is None:
            return None
        backbone_ids = {id(p) for p in self.backbone.parameters()}
        head = [p for p in self.parameters() if id(p) not in backbone_ids]
        groups = [{"params": head, "lr": base_lr, "name": "head"}]
        top_lr = plan.backbone_lr if plan.backbone_lr is not None else base_lr
        for depth, (stage, members) in enumerate(reversed(self.stages)):
            params = [p for n in members for p in direct_params(self.layer(n))]
            if params:
                groups.append({"params": params, "lr": top_lr * plan.lr_decay ** depth,
                               "name": f"backbone:{stage}"})
        return groups

    # -- what the run records -----------------------------------------------------------
    def param_counts(self) -> dict[str, int]:
        backbone = list(self.backbone.parameters())
        backbone_ids = {id(p) for p in backbone}
        return {
            "frozen": sum(p.numel() for p in self.parameters() if not p.requires_grad),
            "backbone": sum(p.numel() for p in backbone),
            "backbone_trainable": sum(p.numel() for p in backbone if p.requires_grad),
            "head": sum(p.numel() for p in self.parameters() if id(p) not in backbone_ids),
        }

    def transfer_record(self) -> dict[str, Any]:
        """metrics.json entries: parameter counts, trainable layers, weights, finetune epoch."""
        record: dict[str, Any] = {
            "params": self.initial_counts,
            "backbone": {"name": self.spec, "layers": len(self.layer_names),
                         "trainable_layers": len(self.initial_trainable), **self.info},
            "trainable_layers": list(self.initial_trainable),
        }
        plan = self.finetune
        if plan is not None:
            record["finetune"] = {
                "frozen_epochs": plan.frozen_epochs, "unfrozen_at_epoch": plan.applied_at_epoch,
                "backbone_lr": plan.backbone_lr, "lr_decay": plan.lr_decay,
                "layers": len(plan.layers),
                "params_after": self.param_counts() if plan.applied_at_epoch else None,
                "trainable_layers_after": self.trainable_layers() if plan.applied_at_epoch else None,
            }
        return record

    def layer_rows(self) -> list[dict[str, Any]]:
        """layers.json: every backbone layer in forward order, its stage and whether it trains."""
        stage_of = {n: s for s, members in self.stages for n in members}
        initial = set(self.initial_trainable)
        later = set(self.finetune.layers) if self.finetune else set()
        rows = []
        for index, name in enumerate(self.layer_names):
            module = self.layer(name)
            rows.append({
                "index": index, "from_head": index - len(self.layer_names), "name": name,
                "type": type(module).__name__, "stage": stage_of.get(name),
                "params": sum(p.numel() for p in direct_params(module)),
                "trainable": name in initial,
                **({"unfrozen_by_finetune": name in later and name not in initial}
                   if self.finetune else {}),
            })
        return rows

    def stage_table(self, in_shape: InShape) -> str:
        """Per-stage rows (output shape, parameters, trainable layers) for summary.txt."""
        shapes: dict[str, Any] = {}
        handles = []

        def hook_for(stage: str):
            def hook(_module: nn.Module, _args: Any, out: Any) -> None:
                if isinstance(out, torch.Tensor):
                    shapes.setdefault(stage, tuple(out.shape[1:]))
            return hook

        for stage, members in self.stages:
            try:
                module = self.layer(stage)
            except AttributeError:
                module = self.layer(members[-1])
            handles.append(module.register_forward_hook(hook_for(stage)))
        modes = {m: m.training for m in self.modules()}
        first = next(self.parameters())
        try:
            self.eval()
            with torch.no_grad():
                self(torch.zeros(1, *in_shape, device=first.device, dtype=first.dtype))
        finally:
            for handle in handles:
                handle.remove()
            for module, training in modes.items():
                module.training = training
        rows = []
        for stage, members in self.stages:
            params = [p for n in members for p in direct_params(self.layer(n))]
            trainable_layers = sum(any(p.requires_grad for p in direct_params(self.layer(n)))
                                   for n in members)
            status = ("frozen" if trainable_layers == 0 else
                      "trainable" if trainable_layers == len(members) else "partly frozen")
            shape = shapes.get(stage)
            rows.append((stage, _shape_text(shape), f"{sum(p.numel() for p in params):,}",
                         f"{sum(p.numel() for p in params if p.requires_grad):,}",
                         f"{trainable_layers}/{len(members)}", status))
        headers = ("Stage", "Output Shape", "Param #", "Trainable", "Layers", "")
        widths = [max(len(h), *(len(r[i]) for r in rows)) + 3 for i, h in enumerate(headers)]
        line = lambda cells: (" " + "".join(c.ljust(w) for c, w in zip(cells, widths))).rstrip()
        total = sum(widths) + 1
        trainable = len(self.trainable_layers())
        title = (f'Backbone "{self.spec}": {len(self.layer_names)} layers (modules holding '
                 f"parameters), {trainable} trainable; BatchNorm of frozen layers "
                 f"{'in eval mode' if self.bn_frozen else 'updates its statistics'}.")
        out = [title, "_" * total, line(headers), "=" * total, *(line(r) for r in rows),
               "_" * total]
        if self.finetune is not None:
            plan = self.finetune
            out.append(f"Finetune: after {plan.frozen_epochs} frozen epoch(s), {len(plan.layers)} "
                       f"layers train at {plan.backbone_lr if plan.backbone_lr is not None else 'train.lr'}"
                       + (f", x{plan.lr_decay} per stage towards the input" if plan.lr_decay != 1 else "")
                       + ".")
        return "\n".join(out)


def _shape_text(shape: tuple[int, ...] | None) -> str:
    if shape is None:
        return ""
    return "(" + ", ".join("None" if d is None else str(d) for d in keras_shape_tuple(shape)) + ")"

"""Training side of transfer learning: per-stage learning rates and the unfreezing epoch.

A ``backbone`` model with ``model.finetune`` (see :mod:`cnnlab.models.backbones`) trains in two
phases: ``frozen_epochs`` epochs with the backbone frozen, then the selected layers train too,
at ``backbone_lr`` (decayed per stage towards the input by ``lr_decay``).

* :func:`finetune_param_groups` gives the optimizer every backbone parameter from the start,
  in one group per stage with its own LR, and the head at ``train.lr``. Frozen parameters have
  no gradient, so the optimizer leaves them alone until they are unfrozen; because the groups
  never change, LR schedules, ReduceLROnPlateau and resuming from a checkpoint need nothing
  special (a callback adding groups mid-run, as Lightning's ``BaseFinetuning`` does, would
  leave schedulers with too few base LRs).
* :class:`UnfreezeBackbone` flips ``requires_grad`` at the start of epoch ``frozen_epochs + 1``
  (also when a resumed run starts later than that) and puts the unfrozen BatchNorm layers back
  in train mode.
"""

from __future__ import annotations

import warnings

import lightning as L
from torch import nn

from cnnlab.config.schema import TrainConfig

_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)

# Frozen BatchNorm layers of a backbone are in eval mode on purpose (``model.bn: frozen``).
warnings.filterwarnings("ignore", ".*module\\(s\\) in eval mode at the start of training.*")


def _net(model: nn.Module) -> nn.Module:
    return getattr(model, "net", model)  # a Classifier wraps the net


def finetune_param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict] | None:
    """Param groups with per-stage learning rates, or None when the model has no finetune plan.

    ``train.norm_bias_lr_mult`` and ``norm_bias_wd_mult`` still apply: each group's norm
    parameters and biases get their own group at ``lr * norm_bias_lr_mult``.
    """
    net = _net(model)
    lr_groups = getattr(net, "lr_groups", None)
    groups = lr_groups(cfg.lr) if callable(lr_groups) else None
    if groups is None:
        return None
    if not cfg.splits_norm_bias:
        return [g for g in groups if g["params"]]
    scaled_ids = {id(p) for m in net.modules() if isinstance(m, _NORMS)
                  for p in m.parameters(recurse=False)}
    scaled_ids |= {id(p) for n, p in net.named_parameters() if n.endswith("bias")}
    split = []
    for group in groups:
        weights = [p for p in group["params"] if id(p) not in scaled_ids]
        scaled = [p for p in group["params"] if id(p) in scaled_ids]
        if weights:
            split.append({**group, "params": weights})
        if scaled:
            split.append({**group, "params": scaled, "lr": group["lr"] * cfg.norm_bias_lr_mult,
                          "wd_mult": cfg.norm_bias_wd_mult, "name": f"{group['name']}:norm_bias"})
    return split


class UnfreezeBackbone(L.Callback):
    """Unfreezes the plan's backbone layers at the start of epoch ``frozen_epochs + 1``."""

    def __init__(self, net: nn.Module) -> None:
        self.net = net
        self.unfrozen: list[str] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        plan = self.net.finetune
        if plan.applied_at_epoch is None and trainer.current_epoch >= plan.frozen_epochs:
            self.unfrozen = self.net.start_finetune(trainer.current_epoch)


def finetune_callbacks(net: nn.Module) -> list[L.Callback]:
    """The callbacks a model's finetune plan needs (none for other models)."""
    if getattr(net, "finetune", None) is None:
        return []
    return [UnfreezeBackbone(net)]

"""The LightningModule: one training step, one validation step, optimizer and LR schedule.

Batches arrive as uint8 (B, C, H, W); they become float, are augmented on the training
device (whole batch, per-sample random parameters) and the Classifier scales them.
Metrics are logged under Keras's names (``loss``, ``accuracy``, ``val_loss``,
``val_accuracy``) so that ``monitor:`` values read as they did in the users' notebooks.
"""

from __future__ import annotations

from typing import Callable

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.config.schema import TrainConfig
from cnnlab.models import l2_penalty
from cnnlab.train.classifier import Classifier
from cnnlab.train.finetune import finetune_param_groups
from cnnlab.train.optim import apply_weight_decay, build_optimizer
from cnnlab.train.schedules import build_step_scheduler

METRIC_MODES = {"loss": "min", "val_loss": "min", "accuracy": "max", "val_accuracy": "max"}


def resolve_mode(monitor: str, mode: str) -> str:
    return METRIC_MODES[monitor] if mode == "auto" else mode


class LitClassifier(L.LightningModule):
    def __init__(self, model: Classifier, *, cfg: TrainConfig, loss: nn.Module,
                 val_loss: nn.Module, augment: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.model = model
        self.cfg = cfg
        self.loss_fn = loss
        self.val_loss_fn = val_loss
        self.augment = augment
        self.diverged_at: int | None = None

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(pixels)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        training = self.trainer is not None and self.trainer.training
        return self.prepare_batch(batch, training=training)

    def on_train_epoch_start(self) -> None:
        self.enter_epoch(self.current_epoch)

    def enter_epoch(self, epoch: int) -> None:
        """Models with epoch-dependent parts (fastnet's stem bias) follow the run's epoch."""
        set_epoch = getattr(self.model.net, "set_epoch", None)
        if set_epoch is not None:
            set_epoch(epoch)

    def prepare_batch(self, batch, *, training: bool, epoch: int | None = None):
        """uint8 (B, C, H, W) -> float on the 0-255 scale, augmented (and, during progressive
        resizing, downscaled) when training; ``epoch`` defaults to the trainer's."""
        images, labels = batch
        x = images.float()
        if training:
            epoch = self.current_epoch if epoch is None else epoch
            x = self.augment(x, epoch=epoch)
            size = self.cfg.train_size(epoch)
            if size is not None and size != x.shape[-1]:
                # Antialiased, so a downscaled batch looks like a smaller photo, not an aliased one.
                x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                                  align_corners=False)
        if self.cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, labels

    def compute_loss(self, x: torch.Tensor, y: torch.Tensor):
        logits = self(x)
        return self.loss_fn(logits, y) + l2_penalty(self.model.net), logits

    def training_step(self, batch, batch_idx: int):
        x, y = batch
        loss, logits = self.compute_loss(x, y)
        if self.cfg.terminate_on_nan and not torch.isfinite(loss):
            # Keras TerminateOnNaN: stop now; returning None skips this optimizer step.
            self.diverged_at = self.global_step
            self.trainer.should_stop = True
            return None
        accuracy = (logits.argmax(dim=1) == y).float().mean()
        self.log("loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log("accuracy", accuracy, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        # As Keras computes val_loss: the compiled loss plus regularisation, but no class weights.
        loss = self.val_loss_fn(logits, y) + l2_penalty(self.model.net)
        accuracy = (logits.argmax(dim=1) == y).float().mean()
        # sync_dist: under DDP each rank sees a shard; the epoch's value is over all of them.
        self.log("val_loss", loss, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log("val_accuracy", accuracy, on_epoch=True, prog_bar=True, sync_dist=True)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        apply_weight_decay(optimizer, self.cfg.weight_decay, self.cfg.weight_decay_mode)

    def configure_optimizers(self):
        # Transfer learning: a backbone with a finetune plan brings per-stage LRs (train/finetune.py).
        groups = finetune_param_groups(self.model, self.cfg) or param_groups(self.model, self.cfg)
        optimizer = build_optimizer(groups, self.cfg)
        plateau = self.cfg.reduce_lr_on_plateau
        if plateau is not None:
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode=resolve_mode(plateau.monitor, plateau.mode), factor=plateau.factor,
                patience=plateau.patience, threshold=plateau.min_delta, threshold_mode="abs",
                min_lr=plateau.min_lr)
            return {"optimizer": optimizer,
                    "lr_scheduler": {"scheduler": scheduler, "monitor": plateau.monitor,
                                     "interval": "epoch", "strict": True}}
        if self.cfg.schedule is not None:
            total = self.trainer.estimated_stepping_batches if self._trainer is not None else 1
            scheduler = build_step_scheduler(optimizer, self.cfg.schedule, int(total))
            return {"optimizer": optimizer,
                    "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
        return optimizer


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """Trainable parameters in two groups: weights, and norm parameters plus biases.

    The second group's LR is ``lr * norm_bias_lr_mult`` and its weight decay
    ``weight_decay * norm_bias_wd_mult`` (the speed recipes train BatchNorm
    biases much faster than weights); one group when the multiplier is 1.
    """
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not cfg.splits_norm_bias:
        return [{"params": [p for _, p in trainable]}]
    norm_ids = {id(p) for m in model.modules()
                if isinstance(m, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm))
                for p in m.parameters(recurse=False)}
    scaled = [p for n, p in trainable if id(p) in norm_ids or n.endswith("bias")]
    scaled_ids = {id(p) for p in scaled}
    weights = [p for _, p in trainable if id(p) not in scaled_ids]
    return [{"params": weights},
            {"params": scaled, "lr": cfg.lr * cfg.norm_bias_lr_mult,
             "wd_mult": cfg.norm_bias_wd_mult}]

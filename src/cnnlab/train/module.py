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
from torch import nn

from cnnlab.config.schema import TrainConfig
from cnnlab.models import l2_penalty
from cnnlab.train.classifier import Classifier
from cnnlab.train.optim import apply_decoupled_weight_decay, build_optimizer

METRIC_MODES = {"loss": "min", "val_loss": "min", "accuracy": "max", "val_accuracy": "max"}


def resolve_mode(monitor: str, mode: str) -> str:
    return METRIC_MODES[monitor] if mode == "auto" else mode


class LitClassifier(L.LightningModule):
    def __init__(self, model: Classifier, *, cfg: TrainConfig, loss: nn.Module,
                 val_loss: nn.Module, augment: Callable[[torch.Tensor], torch.Tensor]) -> None:
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
        images, labels = batch
        x = images.float()  # (B, C, H, W) on the 0-255 scale
        if self.trainer is not None and self.trainer.training:
            x = self.augment(x)
        if self.cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, labels

    def training_step(self, batch, batch_idx: int):
        x, y = batch
        logits = self(x)
        loss = self.loss_fn(logits, y) + l2_penalty(self.model.net)
        if self.cfg.terminate_on_nan and not torch.isfinite(loss):
            # Keras TerminateOnNaN: stop now; returning None skips this optimizer step.
            self.diverged_at = self.global_step
            self.trainer.should_stop = True
            return None
        accuracy = (logits.argmax(dim=1) == y).float().mean()
        self.log("loss", loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("accuracy", accuracy, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        # As Keras computes val_loss: the compiled loss plus regularisation, but no class weights.
        loss = self.val_loss_fn(logits, y) + l2_penalty(self.model.net)
        accuracy = (logits.argmax(dim=1) == y).float().mean()
        self.log("val_loss", loss, on_epoch=True, prog_bar=True)
        self.log("val_accuracy", accuracy, on_epoch=True, prog_bar=True)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        apply_decoupled_weight_decay(optimizer, self.cfg.weight_decay)

    def configure_optimizers(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = build_optimizer(params, self.cfg)
        plateau = self.cfg.reduce_lr_on_plateau
        if plateau is None:
            return optimizer
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=resolve_mode(plateau.monitor, plateau.mode), factor=plateau.factor,
            patience=plateau.patience, threshold=plateau.min_delta, threshold_mode="abs",
            min_lr=plateau.min_lr)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "monitor": plateau.monitor,
                                 "interval": "epoch", "strict": True}}

"""airbench94's lookahead: weight averaging that starts off and ramps up as (step/total)^3.

timm's Lookahead (``train.lookahead`` with ``ramp: none``) pulls the fast weights back to the
slow ones by a fixed ``alpha`` every ``k`` steps. Early in a short run that only slows
learning, so airbench94 (Jordan 2024) lets ``alpha`` fall from 1 (the slow weights simply
follow) to its final value on a cubic ramp, averages BatchNorm's running statistics along
with the weights, and ends training on the slow weights.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch


def ramped_alpha(step: int, total: int, final_alpha: float) -> float:
    """Fraction of the way the slow weights move to the fast ones at ``step`` of ``total``."""
    progress = min(step / max(total, 1), 1.0)
    return 1.0 - (1.0 - final_alpha) * progress**3


class RampedLookahead(L.Callback):
    def __init__(self, k: int, final_alpha: float) -> None:
        self.k = k
        self.final_alpha = final_alpha
        self.slow: dict[str, torch.Tensor] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.slow:  # a resumed run brings its slow weights from the checkpoint
            self.slow = {name: t.detach().clone() for name, t in _float_state(pl_module)}

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if step % self.k == 0:
            alpha = ramped_alpha(step, int(trainer.estimated_stepping_batches), self.final_alpha)
            self.sync(pl_module, alpha)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.sync(pl_module, 0.0)  # evaluate and save the slow weights

    @torch.no_grad()
    def sync(self, pl_module: L.LightningModule, alpha: float) -> None:
        """slow += alpha * (fast - slow); fast = slow."""
        for name, fast in _float_state(pl_module):
            slow = self.slow[name]
            slow.lerp_(fast, alpha)
            fast.copy_(slow)

    def state_dict(self) -> dict[str, Any]:
        return {"slow": self.slow}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.slow = state_dict["slow"]


def _float_state(module: torch.nn.Module):
    """(name, tensor) of every floating-point parameter and buffer, sharing their storage."""
    return [(n, t) for n, t in module.state_dict(keep_vars=False).items() if t.is_floating_point()]

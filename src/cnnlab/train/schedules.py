"""Per-step learning-rate schedules: pure functions of progress, wrapped in a LambdaLR.

The speed-record recipes change the learning rate every step, not every epoch: a linear
warm-up, then a triangular/one-cycle ramp down or a cosine decay. Each schedule here is a
multiplier of the base LR as a function of ``step / total_steps``, so it is testable as a
table of (progress, expected) rows.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from cnnlab.config.schema import ScheduleConfig
from cnnlab.registry import Registry

Multiplier = Callable[[float, ScheduleConfig], float]
SCHEDULES: Registry[Multiplier] = Registry("schedule")


def _warmup(progress: float, cfg: ScheduleConfig) -> float | None:
    if cfg.warmup > 0 and progress < cfg.warmup:
        return cfg.start_factor + (1.0 - cfg.start_factor) * progress / cfg.warmup
    return None


def _after_warmup(progress: float, cfg: ScheduleConfig) -> float:
    return (progress - cfg.warmup) / max(1e-12, 1.0 - cfg.warmup)


@SCHEDULES.register("constant", "the base learning rate throughout (after any warm-up)")
def constant(progress: float, cfg: ScheduleConfig) -> float:
    warm = _warmup(progress, cfg)
    return 1.0 if warm is None else warm


@SCHEDULES.register("linear", "warm-up, then linear decay to final_factor (triangular / one-cycle)")
def linear(progress: float, cfg: ScheduleConfig) -> float:
    warm = _warmup(progress, cfg)
    if warm is not None:
        return warm
    return 1.0 + (cfg.final_factor - 1.0) * min(1.0, _after_warmup(progress, cfg))


@SCHEDULES.register("cosine", "warm-up, then cosine decay to final_factor")
def cosine(progress: float, cfg: ScheduleConfig) -> float:
    warm = _warmup(progress, cfg)
    if warm is not None:
        return warm
    t = min(1.0, _after_warmup(progress, cfg))
    return cfg.final_factor + (1.0 - cfg.final_factor) * 0.5 * (1.0 + math.cos(math.pi * t))


def build_step_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig,
                         total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    multiplier = SCHEDULES.get(cfg.name)
    total = max(1, total_steps)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: multiplier(min(step, total) / total, cfg))

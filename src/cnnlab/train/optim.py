"""Optimizers by name, with weight decay applied as Keras applies it, or as torch's SGD does.

Keras's ``weight_decay`` on any optimizer is decoupled: after the update, every trainable
variable shrinks by ``lr * weight_decay``. torch's SGD/Adam couple it into the gradient
instead. Both rules are applied here by :func:`apply_weight_decay`, the same way for every
optimizer (``train.weight_decay_mode``, decoupled by default); ``adam`` and ``adamw``
therefore differ only by name.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable

import torch
from timm.optim import Lookahead
# torch's Muon takes 2-D weights only; its Newton-Schulz step is reused here for conv filters.
from torch.optim._muon import DEFAULT_A, DEFAULT_B, DEFAULT_C, EPS, _zeropower_via_newtonschulz
from torch.optim.sgd import sgd

from cnnlab.config.schema import TrainConfig
from cnnlab.registry import Registry

Params = Iterable[torch.nn.Parameter] | list[dict]
OptimizerFactory = Callable[[Params, TrainConfig], torch.optim.Optimizer]
OPTIMIZERS: Registry[OptimizerFactory] = Registry("optimizer")

# torch's fused kernels update each tensor in one pass (its default loop makes about six
# passes over every parameter-sized buffer); they exist for CPU and CUDA and give the same
# update. Adam's step on report 003's net (2.4M parameters, 2-core CPU): ~5 ms -> ~1.3 ms.
FUSED = {"fused": True}


@OPTIMIZERS.register("adam", "Adam (Keras defaults: eps 1e-7)")
def _adam(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=cfg.lr, eps=1e-7, **FUSED)


@OPTIMIZERS.register("adamw", "Adam with decoupled weight decay (same as adam + weight_decay)")
def _adamw(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=cfg.lr, eps=1e-7, weight_decay=0.0, **FUSED)


@OPTIMIZERS.register("sgd", "SGD with momentum and Nesterov options")
def _sgd(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                           nesterov=cfg.nesterov and cfg.momentum > 0, **FUSED)


@OPTIMIZERS.register("rmsprop", "RMSprop (Keras defaults: rho 0.9, eps 1e-7)")
def _rmsprop(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.RMSprop(params, lr=cfg.lr, alpha=0.9, eps=1e-7, momentum=cfg.momentum)


class MuonWithSGD(torch.optim.Optimizer):
    """Muon for the groups marked ``use_muon`` (conv filters), Nesterov SGD for the others.

    Muon, as airbench94_muon applies it to conv filters: momentum, then the update reshaped to
    (out, in * k * k) and orthogonalised by a few Newton-Schulz iterations, so every direction
    of the filter bank moves by about the same amount; each filter bank is first rescaled to
    norm sqrt(out), which keeps the step's relative size fixed (the role weight decay plays
    for BatchNorm-ed weights under SGD). Other groups take torch's SGD step.
    """

    def __init__(self, params: Params, *, lr: float, momentum: float, nesterov: bool,
                 ns_steps: int) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov,
                                      use_muon=False, ns_steps=ns_steps))

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            buffers = [self.state[p].get("momentum_buffer") for p in params]
            if group["use_muon"]:
                self._muon_step(group, params, buffers)
                continue
            sgd(params, [p.grad for p in params], buffers, weight_decay=0.0,
                momentum=group["momentum"], lr=group["lr"], dampening=0.0,
                nesterov=group["nesterov"], maximize=False)
            for p, buffer in zip(params, buffers):
                self.state[p]["momentum_buffer"] = buffer
        return loss

    def _muon_step(self, group: dict, params: list[torch.Tensor],
                   buffers: list[torch.Tensor | None]) -> None:
        momentum = group["momentum"]
        for p, buffer in zip(params, buffers):
            if buffer is None:
                buffer = self.state[p]["momentum_buffer"] = torch.zeros_like(p.grad)
            buffer.mul_(momentum).add_(p.grad)
            update = p.grad.add(buffer, alpha=momentum) if group["nesterov"] else buffer
            p.mul_(math.sqrt(p.shape[0]) / p.norm().clamp(min=EPS))
            matrix = update.reshape(len(update), -1)  # (out, in * k * k)
            ortho = _zeropower_via_newtonschulz(matrix, (DEFAULT_A, DEFAULT_B, DEFAULT_C),
                                                group["ns_steps"], EPS)
            p.add_(ortho.view_as(p).to(p.dtype), alpha=-group["lr"])


def split_filters(groups: Params, cfg: TrainConfig) -> list[dict]:
    """Each group's conv filters (4-D weights) moved into a Muon group of their own.

    Muon's settings replace the group's LR and momentum, and the filters take no weight decay:
    Muon renormalises them every step instead.
    """
    groups = list(groups)
    if groups and not isinstance(groups[0], dict):
        groups = [{"params": groups}]
    split = []
    for group in groups:
        filters = [p for p in group["params"] if p.ndim == 4]
        others = [p for p in group["params"] if p.ndim != 4]
        if others:
            split.append({**group, "params": others})
        if filters:
            split.append({**group, "params": filters, "use_muon": True, "lr": cfg.muon.lr,
                          "momentum": cfg.muon.momentum, "nesterov": cfg.muon.nesterov,
                          "wd_mult": 0.0})
    return split


@OPTIMIZERS.register("muon", "Muon for conv filters (orthogonalised momentum), Nesterov SGD "
                     "at lr/momentum for the rest (airbench94_muon)")
def _muon(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    return MuonWithSGD(split_filters(params, cfg), lr=cfg.lr, momentum=cfg.momentum,
                       nesterov=cfg.nesterov and cfg.momentum > 0, ns_steps=cfg.muon.ns_steps)


def build_optimizer(params: Params, cfg: TrainConfig) -> torch.optim.Optimizer:
    optimizer = OPTIMIZERS.get(cfg.optimizer)(params, cfg)
    if cfg.lookahead is not None and cfg.lookahead.ramp == "none":
        # The cubic ramp is a callback instead (train/averaging.py).
        # timm's wrapper shares the base optimizer's param_groups, so LR schedules and the
        # decoupled weight decay below see the same groups.
        optimizer = Lookahead(optimizer, alpha=cfg.lookahead.alpha, k=cfg.lookahead.k)
    return optimizer


@torch.no_grad()
def apply_weight_decay(optimizer: torch.optim.Optimizer, weight_decay: float,
                       mode: str = "decoupled") -> None:
    """Weight decay on every parameter with a gradient, just before the optimizer's step.

    ``decoupled`` (Keras's rule): ``p -= lr * wd * p``. ``coupled``: ``grad += wd * p``, the L2
    term torch's ``weight_decay`` arguments add, which momentum then carries (in steady state
    it decays 1 / (1 - momentum) times more per step than the decoupled rule at the same wd).
    A group's ``wd_mult`` (norm parameters and biases) scales its decay.
    """
    if weight_decay <= 0:
        return
    for group in optimizer.param_groups:
        decay = weight_decay * group.get("wd_mult", 1.0)
        params = [p for p in group["params"] if p.grad is not None]
        if not params or decay <= 0:
            continue
        if mode == "coupled":
            torch._foreach_add_([p.grad for p in params], params, alpha=decay)
        else:
            torch._foreach_mul_(params, 1.0 - group["lr"] * decay)

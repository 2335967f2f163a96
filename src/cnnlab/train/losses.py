"""Losses by name, with Keras's class-weight semantics.

Keras multiplies each sample's loss by its class weight and divides by the batch size (not
by the sum of the weights, as ``torch.nn.CrossEntropyLoss(weight=...)`` does); we follow
Keras so that report 003's weighted runs mean the same thing here.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.config.schema import ClassWeights, CrossEntropy, Focal
from cnnlab.errors import ConfigError
from cnnlab.registry import Registry

LOSSES: Registry[Callable[..., nn.Module]] = Registry("loss")


class _WeightedLoss(nn.Module):
    def __init__(self, class_weights: torch.Tensor | None) -> None:
        super().__init__()
        self.register_buffer("class_weights", class_weights, persistent=False)

    def reduce(self, per_sample: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.class_weights is not None:
            per_sample = per_sample * self.class_weights[targets]
        return per_sample.mean()


@LOSSES.register("cross_entropy", "softmax cross-entropy, optional label smoothing")
class CrossEntropyLoss(_WeightedLoss):
    def __init__(self, spec: CrossEntropy, class_weights: torch.Tensor | None = None) -> None:
        super().__init__(class_weights)
        self.label_smoothing = spec.label_smoothing

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        per_sample = F.cross_entropy(logits, targets, reduction="none",
                                     label_smoothing=self.label_smoothing)
        return self.reduce(per_sample, targets)


@LOSSES.register("focal", "focal loss alpha * (1 - p_t)^gamma * CE (Lin et al. 2017)")
class FocalLoss(_WeightedLoss):
    def __init__(self, spec: Focal, class_weights: torch.Tensor | None = None) -> None:
        super().__init__(class_weights)
        self.gamma, self.alpha, self.label_smoothing = spec.gamma, spec.alpha, spec.label_smoothing

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(logits, targets, reduction="none", label_smoothing=self.label_smoothing)
        p_true = logits.float().softmax(dim=1).gather(1, targets[:, None]).squeeze(1)  # (B,)
        per_sample = (1.0 - p_true).clamp_min(0.0).pow(self.gamma) * ce
        if self.alpha is not None:
            per_sample = self.alpha * per_sample
        return self.reduce(per_sample, targets)


def build_loss(spec: CrossEntropy | Focal, class_weights: torch.Tensor | None = None) -> nn.Module:
    return LOSSES.get(spec.name)(spec, class_weights)


def class_weight_vector(cfg: ClassWeights, classes: Sequence[str], train_counts: Sequence[int]
                        ) -> torch.Tensor | None:
    """Per-class loss weights: ``balanced`` = n / (k * count_c) (sklearn's), then multipliers."""
    if cfg.mode == "none" and not cfg.multipliers:
        return None
    unknown = sorted(set(cfg.multipliers) - set(classes))
    if unknown:
        raise ConfigError(f"train.class_weights.multipliers names {', '.join(unknown)}, not a "
                          f"class of this dataset; classes: {', '.join(classes)}.")
    counts = np.asarray(train_counts, dtype=np.float64)
    if cfg.mode == "balanced":
        weights = counts.sum() / (len(counts) * np.maximum(counts, 1.0))
    else:
        weights = np.ones(len(classes))
    for name, factor in cfg.multipliers.items():
        weights[list(classes).index(name)] *= factor
    return torch.tensor(weights, dtype=torch.float32)

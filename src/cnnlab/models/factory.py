"""The model registry: config ``name`` -> builder of an ``nn.Module`` for a given input.

A builder takes ``(cfg, in_shape, num_classes)`` with ``in_shape = (C, H, W)`` and returns a
module mapping ``(B, C, H, W)`` images to ``(B, num_classes)`` logits (softmax belongs to the
loss and to prediction). New architectures register here and add an example config to
``tests/models/test_registry_smoke.py``.
"""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

from cnnlab.registry import Registry

InShape = tuple[int, int, int]
ModelBuilder = Callable[[Any, InShape, int], nn.Module]

MODELS: Registry[ModelBuilder] = Registry("model")


def build_model(cfg: Any, in_shape: InShape, num_classes: int) -> nn.Module:
    """Build the model named by ``cfg.name`` for ``in_shape`` (C, H, W) images, in train mode."""
    model = MODELS.get(cfg.name)(cfg, tuple(in_shape), num_classes)
    return model.train()

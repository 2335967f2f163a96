"""Every registered model builds, runs forward and backward, and summarises at small sizes.

A new model must add a small example config to ``EXAMPLE_CONFIGS`` (the test below fails
until it does), so that it is exercised here on both RGB 32x32 and grayscale 28x28 inputs.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from pydantic import TypeAdapter

from cnnlab.config.schema import ModelConfig
from cnnlab.errors import ConfigError
from cnnlab.models import MODELS, build_model, l2_penalty, summarize

# Model name -> a small config (without ``name``) that builds quickly.
EXAMPLE_CONFIGS: dict[str, dict[str, Any]] = {
    "sequential": {
        "layers": [
            {"conv_block": {"filters": [4, 8], "convs": 1, "batchnorm": "before_activation",
                            "dropout": 0.1, "l2": 1e-4}},
            {"conv2d": {"filters": 8, "strides": 2, "padding": "same", "activation": "relu"}},
            {"flatten": {}},
            {"dense": {"units": 16, "activation": "relu"}},
            {"dropout": {"rate": 0.2}},
        ],
        "output_l2": 1e-4,
    },
    "resnet_cifar": {"depth": 8, "width": 4, "dropout": 0.1, "head_l2": 1e-4},
    "squeezenet": {"stem_filters": 8, "stages": [[2], [4]], "batchnorm": True},
    "vgg": {"blocks": [4, 8], "convs_per_block": [1, 2], "batchnorm": "after_activation",
            "dropout": 0.1, "l2": 1e-4, "dense": [16], "dense_batchnorm": True},
    "fastnet": {"widths": [4, 8], "whiten_width": 8},
    # Transfer learning: a library backbone without weights (offline-safe), grayscale repeated.
    "backbone": {"backbone": "torchvision:squeezenet1_1", "pretrained": False,
                 "head": [{"global_avg_pool": {}}, {"dense": {"units": 8, "activation": "relu"}},
                          {"dropout": {"rate": 0.2}}]},
}

NUM_CLASSES = 5


def test_every_model_has_an_example_config() -> None:
    missing = sorted(set(MODELS.names()) - set(EXAMPLE_CONFIGS))
    assert not missing, f"add a small example config to EXAMPLE_CONFIGS for: {missing}"


def test_unknown_model_lists_the_registered_ones() -> None:
    with pytest.raises(ConfigError, match="sequential"):
        MODELS.get("no_such_model")


def test_registering_a_name_twice_is_an_error() -> None:
    with pytest.raises(ValueError):
        MODELS.add("sequential", lambda cfg, in_shape, num_classes: None)


@pytest.mark.parametrize("in_shape", [(3, 32, 32), (1, 28, 28)], ids=["rgb32", "gray28"])
@pytest.mark.parametrize("name", MODELS.names())
def test_builds_runs_and_trains(name: str, in_shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    cfg = TypeAdapter(ModelConfig).validate_python({"name": name, **EXAMPLE_CONFIGS[name]})
    model = build_model(cfg, in_shape, NUM_CLASSES)
    assert model.training

    x = torch.randn(2, *in_shape)
    logits = model(x)
    assert logits.shape == (2, NUM_CLASSES)
    loss = F.cross_entropy(logits, torch.tensor([0, NUM_CLASSES - 1])) + l2_penalty(model)
    loss.backward()
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert params
    for param_name, param in params:
        assert param.grad is not None, param_name
        assert torch.isfinite(param.grad).all(), param_name

    summary = summarize(model, in_shape)
    stats = sum(b.numel() for n, b in model.named_buffers()
                if n.endswith(("running_mean", "running_var")))
    assert summary.total == sum(p.numel() for p in model.parameters()) + stats
    assert summary.rows[-1].output_shape == (None, NUM_CLASSES)
    assert model.training  # summarize puts the modes back

import pytest
import torch
import torch.nn.functional as F

from cnnlab.config.schema import ClassWeights, CrossEntropy, Focal, LossSpec
from cnnlab.errors import ConfigError
from cnnlab.train import LOSSES
from cnnlab.train.losses import build_loss, class_weight_vector
import typing


def test_registry_matches_the_schema():
    union = typing.get_args(typing.get_args(LossSpec)[0])
    tags = {typing.get_args(m.model_fields["name"].annotation)[0] for m in union}
    assert set(LOSSES.names()) == tags


def test_cross_entropy_matches_torch_without_weights():
    logits, y = torch.randn(8, 4), torch.randint(0, 4, (8,))
    loss = build_loss(CrossEntropy(name="cross_entropy", label_smoothing=0.1))
    assert torch.allclose(loss(logits, y), F.cross_entropy(logits, y, label_smoothing=0.1))


def test_class_weights_follow_keras_sum_over_batch_size():
    logits, y = torch.randn(8, 3), torch.tensor([0, 0, 1, 1, 2, 2, 2, 2])
    w = torch.tensor([1.0, 2.0, 0.5])
    loss = build_loss(CrossEntropy(name="cross_entropy"), w)(logits, y)
    expected = (F.cross_entropy(logits, y, reduction="none") * w[y]).sum() / len(y)
    assert torch.allclose(loss, expected)


def test_focal_reduces_to_scaled_cross_entropy_with_gamma_zero():
    logits, y = torch.randn(16, 5), torch.randint(0, 5, (16,))
    focal = build_loss(Focal(name="focal", gamma=0.0, alpha=0.25))
    assert torch.allclose(focal(logits, y), 0.25 * F.cross_entropy(logits, y))


def test_focal_down_weights_easy_examples():
    y = torch.tensor([0, 0])
    logits = torch.tensor([[5.0, 0.0], [0.2, 0.0]])  # easy, hard
    focal = build_loss(Focal(name="focal", gamma=2.0, alpha=None))
    per_easy = focal(logits[:1], y[:1]) / F.cross_entropy(logits[:1], y[:1])
    per_hard = focal(logits[1:], y[1:]) / F.cross_entropy(logits[1:], y[1:])
    assert per_easy < 0.001 < per_hard


def test_balanced_weights_and_multipliers_as_report_003():
    classes = ["cat", "dog", "ship"]
    w = class_weight_vector(ClassWeights(mode="balanced", multipliers={"cat": 2.0, "dog": 2.0}),
                            classes, [10, 20, 30])
    balanced = torch.tensor([60 / 30, 60 / 60, 60 / 90])
    assert torch.allclose(w, balanced * torch.tensor([2.0, 2.0, 1.0]))
    assert class_weight_vector(ClassWeights(), classes, [1, 1, 1]) is None
    with pytest.raises(ConfigError, match="horse"):
        class_weight_vector(ClassWeights(multipliers={"horse": 2.0}), classes, [1, 1, 1])

"""The train section's rules (cnnlab.config.train): shorthands, conflicting LR policies and
the per-epoch training size."""

import pytest

from cnnlab.config import validate_config
from cnnlab.config.train import Focal, TrainConfig
from cnnlab.errors import ConfigError


def test_shorthands_for_loss_class_weights_and_callbacks():
    cfg = validate_config({"name": "x", "train": {"loss": "focal", "class_weights": "balanced",
                                                  "early_stopping": True}})
    assert isinstance(cfg.train.loss, Focal) and cfg.train.loss.gamma == 2.0
    assert cfg.train.class_weights.mode == "balanced"
    assert cfg.train.early_stopping.patience == 5


def test_assignment_is_validated():
    cfg = TrainConfig()
    with pytest.raises(Exception):
        cfg.epochs = 0


def test_progressive_resize_stages_map_epochs_to_training_sizes():
    cfg = validate_config({"name": "x", "train": {"epochs": 5, "progressive_resize": [
        {"epochs": 2, "size": 16}, {"epochs": 1, "size": 24}]}})
    assert [cfg.train.train_size(e) for e in range(5)] == [16, 16, 24, None, None]


def test_schedule_and_plateau_together_are_refused():
    with pytest.raises(ConfigError, match="keep one"):
        validate_config({"name": "x", "train": {"schedule": {"name": "linear"},
                                                "reduce_lr_on_plateau": True}})


def test_plateau_on_training_loss_allows_sparse_validation():
    cfg = validate_config({"name": "x", "train": {"validation_freq": 3,
                                                  "reduce_lr_on_plateau": {"monitor": "loss"}}})
    assert cfg.train.reduce_lr_on_plateau.monitor == "loss"


def test_false_and_null_switch_callbacks_and_class_weights_off():
    cfg = validate_config({"name": "x", "train": {"checkpoint": False, "class_weights": None}})
    assert cfg.train.checkpoint is None
    assert cfg.train.class_weights.mode == "none"


def test_norm_bias_group_is_split_only_when_a_multiplier_differs():
    assert not TrainConfig().splits_norm_bias
    assert TrainConfig(norm_bias_lr_mult=64.0).splits_norm_bias
    assert TrainConfig(norm_bias_wd_mult=0.0).splits_norm_bias

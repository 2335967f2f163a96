"""Two-phase fine-tuning through the real training loop: the backbone stays frozen (weights and
BatchNorm statistics) for ``frozen_epochs``, then the chosen layers train at their own LR."""

from __future__ import annotations

import math

import pytest
import torch
import yaml

from cnnlab.config import validate_config
from cnnlab.config.schema import TrainConfig
from cnnlab.data import build_data
from cnnlab.models import build_model
from cnnlab.train import Classifier, train
from cnnlab.train.finetune import finetune_param_groups


def small_backbone_yaml(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump({
        "name": "tests/small_backbone",
        "model": {"layers": [
            {"conv2d": {"filters": 4, "padding": "same", "activation": "relu"}},
            {"batchnorm": {"momentum": 0.5}},
            {"conv2d": {"filters": 8, "padding": "same", "activation": "relu"}},
            {"batchnorm": {"momentum": 0.5}},
            {"conv2d": {"filters": 8, "padding": "same", "activation": "relu"}},
            {"flatten": {}},
        ]},
    }))
    return path


def experiment(tmp_path, **model):
    return validate_config({
        "name": "tests/finetune",
        "data": {"name": "digits", "max_per_class": 8, "val_split": 0.25, "test_split": 0.0},
        "model": {"name": "backbone", "backbone": f"cnnlab:{small_backbone_yaml(tmp_path)}",
                  "pretrained": False, **model},
        "train": {"epochs": 3, "batch_size": 16, "lr": 1e-3, "optimizer": "adam",
                  "checkpoint": None, "progress_bar": False, "threads": 1},
    })


@pytest.mark.filterwarnings("ignore:.*in eval mode at the start of training")
def test_two_phase_schedule_unfreezes_at_the_right_epoch_with_the_right_lr(tmp_path, monkeypatch):
    import cnnlab.train.module as module

    captured = {}
    real_build = module.build_optimizer

    def capture(params, cfg):
        captured["optimizer"] = real_build(params, cfg)
        return captured["optimizer"]

    monkeypatch.setattr(module, "build_optimizer", capture)
    cfg = experiment(tmp_path, finetune={"frozen_epochs": 2, "backbone_lr": 1e-4, "lr_decay": 0.5,
                                         "unfreeze": {"last": 2}})
    data = build_data(cfg.data)
    net = build_model(cfg.model, data.in_shape, data.num_classes)
    assert not any(p.requires_grad for p in net.backbone.parameters())

    frozen_bn, unfrozen_bn = net.layer("batch_normalization"), net.layer("batch_normalization_1")
    modes: dict[str, list[bool]] = {"frozen": [], "unfrozen": []}
    frozen_bn.register_forward_pre_hook(lambda m, a: modes["frozen"].append(m.training))
    unfrozen_bn.register_forward_pre_hook(lambda m, a: modes["unfrozen"].append(m.training))

    def snapshot():
        return {n: t.detach().clone() for n, t in net.backbone.model.state_dict().items()}

    snapshots = [snapshot()]
    classifier = Classifier(net, data.mean, data.std)
    result = train(classifier, data, cfg.train, [], checkpoint_dir=tmp_path / "checkpoints",
                   on_epoch=lambda row: snapshots.append(snapshot()))
    assert result.status == "completed" and len(snapshots) == 4

    # Phase 1 (epochs 1-2): nothing in the backbone moves, BatchNorm statistics included.
    for epoch in (1, 2):
        for name, tensor in snapshots[0].items():
            assert torch.equal(snapshots[epoch][name], tensor), (epoch, name)
    # Epoch 3: the last two layers (batch_normalization_1, conv2d_2) train, the others do not.
    changed = {n.rsplit(".", 1)[0] for n, t in snapshots[3].items()
               if not torch.equal(t, snapshots[0][n]) and not n.endswith("num_batches_tracked")}
    assert changed == {"batch_normalization_1", "conv2d_2.conv"}
    assert net.finetune.applied_at_epoch == 3

    # The unfrozen BatchNorm ran in train mode only in epoch 3; the frozen one never did.
    steps = math.ceil(len(data.train) / 16) - (len(data.train) % 16 == 1)
    assert not any(modes["frozen"])
    assert sum(modes["unfrozen"]) == steps

    # Optimizer: head at train.lr, each backbone stage at backbone_lr * 0.5 ** depth.
    optimizer = captured["optimizer"]
    lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert lrs["head"] == pytest.approx(1e-3)
    assert lrs["backbone:conv2d_2"] == pytest.approx(1e-4)
    assert lrs["backbone:batch_normalization_1"] == pytest.approx(5e-5)
    assert lrs["backbone:conv2d"] == pytest.approx(1e-4 * 0.5 ** 4)
    state = optimizer.state
    conv2d_2 = net.layer("conv2d_2.conv").weight
    head_kernel = next(p for g in optimizer.param_groups if g["name"] == "head" for p in g["params"])
    assert int(state[conv2d_2]["step"]) == steps  # one epoch of updates
    assert int(state[head_kernel]["step"]) == 3 * steps
    assert net.layer("conv2d.conv").weight not in state  # never unfrozen, never updated


def test_frozen_epochs_zero_trains_the_selection_from_the_start(tmp_path):
    cfg = experiment(tmp_path, finetune={"frozen_epochs": 0, "backbone_lr": 1e-5,
                                         "unfreeze": {"range": [-3, None]}})
    net = build_model(cfg.model, (1, 8, 8), 10)
    assert net.trainable_layers() == ["conv2d_1.conv", "batch_normalization_1", "conv2d_2.conv"]
    assert net.finetune.applied_at_epoch == 1


def test_norm_bias_multiplier_splits_the_backbone_groups(tmp_path):
    cfg = experiment(tmp_path, finetune={"frozen_epochs": 1, "backbone_lr": 1e-4})
    net = build_model(cfg.model, (1, 8, 8), 10)
    groups = finetune_param_groups(net, TrainConfig(lr=1e-3, norm_bias_lr_mult=4.0))
    lrs = {g["name"]: g["lr"] for g in groups}
    assert lrs["backbone:conv2d_2"] == pytest.approx(1e-4)
    assert lrs["backbone:conv2d_2:norm_bias"] == pytest.approx(4e-4)
    assert lrs["backbone:batch_normalization_1:norm_bias"] == pytest.approx(4e-4)
    assert sum(len(g["params"]) for g in groups) == len(list(net.parameters()))


def test_models_without_a_plan_keep_the_default_groups():
    assert finetune_param_groups(torch.nn.Linear(2, 2), TrainConfig()) is None

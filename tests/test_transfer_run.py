"""Transfer learning end to end: a cnnlab run becomes the backbone of the next one, the run
folder records what was frozen, two-phase runs resume, and missing weights fail at once."""

from __future__ import annotations

import json
import time

import pytest
import torch
import yaml
from safetensors.torch import load_file

from cnnlab.config import validate_config
from cnnlab.pipeline import resume_experiment, run_experiment

pytestmark = pytest.mark.filterwarnings("ignore:.*in eval mode at the start of training")

DIGITS_A = [str(d) for d in range(5)]
DIGITS_B = [str(d) for d in range(5, 10)]


def quiet(text):
    pass


def _train(**extra):
    return {"epochs": 2, "batch_size": 32, "progress_bar": False, "threads": 1, **extra}


def pretrain(tmp_path):
    cfg = validate_config({
        "name": "tests/pretrain",
        "data": {"name": "digits", "classes": DIGITS_A, "max_per_class": 40, "test_split": 0.0},
        "model": {"layers": [
            {"conv_block": {"filters": [8, 16], "convs": 1, "batchnorm": "after_activation",
                            "bn_momentum": 0.9, "pool": None}},
            {"flatten": {}},
            {"dense": {"units": 16, "activation": "relu"}},
        ]},
        "train": _train(),
        "runs_dir": str(tmp_path / "runs"),
    })
    return run_experiment(cfg, say=quiet).run_dir


def transfer(tmp_path, run_dir, name="tests/transfer", train=None, **model):
    return validate_config({
        "name": name,
        "data": {"name": "digits", "classes": DIGITS_B, "max_per_class": 40, "test_split": 0.0},
        "model": {"name": "backbone", "backbone": f"cnnlab:{run_dir}", "pretrained": True,
                  "head": [{"global_avg_pool": {}}, {"dense": {"units": 8, "activation": "relu"}}],
                  **model},
        "train": train or _train(),
        "runs_dir": str(tmp_path / "runs"),
    })


def test_a_run_is_the_frozen_backbone_of_the_next_and_the_folder_says_so(tmp_path):
    source = pretrain(tmp_path)
    outcome = run_experiment(transfer(tmp_path, source, unfreeze={"last": 2}), say=quiet)
    metrics = json.loads((outcome.run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed"

    # The four backbone layers: conv2d.conv (1*8*9+8 = 80), batch_normalization (2*8 = 16),
    # conv2d_1.conv (8*16*9+16 = 1168), batch_normalization_1 (2*16 = 32); `last: 2`
    # unfreezes the second conv and its BatchNorm.
    assert metrics["trainable_layers"] == ["conv2d_1.conv", "batch_normalization_1"]
    params = metrics["params"]
    assert params["frozen"] == 80 + 16 and params["backbone_trainable"] == 1168 + 32
    assert params["head"] == 16 * 8 + 8 + 8 * 5 + 5
    assert params["trainable"] == 1168 + 32 + params["head"]
    assert metrics["backbone"]["layers"] == 4 and metrics["backbone"]["experiment"] == "tests/pretrain"
    assert metrics["input_normalization"]["std"] == [255.0]  # the pretrained run's own scaling
    layers = json.loads((outcome.run_dir / "layers.json").read_text())
    assert [(r["name"], r["params"], r["trainable"]) for r in layers] == [
        ("conv2d.conv", 80, False), ("batch_normalization", 16, False),
        ("conv2d_1.conv", 1168, True), ("batch_normalization_1", 32, True)]
    summary = (outcome.run_dir / "summary.txt").read_text()
    assert "backbone (cnnlab:tests/pretrain, partly frozen)" in summary
    assert "Backbone \"cnnlab:tests/pretrain\": 4 layers" in summary

    # Frozen layers, BatchNorm statistics included, are exactly the pretrained ones.
    before, after = (load_file(str(d / "model.safetensors")) for d in (source, outcome.run_dir))
    for key in ("conv2d.conv.weight", "batch_normalization.running_mean",
                "batch_normalization.running_var"):
        assert torch.equal(after[f"net.backbone.model.{key}"], before[f"net.{key}"]), key
    assert not torch.equal(after["net.backbone.model.conv2d_1.conv.weight"],
                           before["net.conv2d_1.conv.weight"])


def test_two_phase_run_resumes_after_the_unfreezing_epoch(tmp_path, monkeypatch):
    import cnnlab.train.fit as fit

    source = pretrain(tmp_path)
    original = fit.EpochRecorder.on_train_epoch_start

    def ctrl_c_in_third_epoch(self, trainer, pl_module):
        original(self, trainer, pl_module)
        if trainer.current_epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(fit.EpochRecorder, "on_train_epoch_start", ctrl_c_in_third_epoch)
    cfg = transfer(tmp_path, source, train=_train(epochs=4, reduce_lr_on_plateau={"patience": 1}),
                   finetune={"frozen_epochs": 1, "backbone_lr": 1e-4, "lr_decay": 0.5})
    outcome = run_experiment(cfg, say=quiet)
    assert outcome.metrics["status"] == "interrupted"

    monkeypatch.setattr(fit.EpochRecorder, "on_train_epoch_start", original)
    resumed = resume_experiment(outcome.run_dir, say=quiet)
    metrics = resumed.metrics
    assert metrics["status"] == "completed" and metrics["epochs_run"] == 4
    assert metrics["trainable_layers"] == []  # phase 1
    assert metrics["finetune"]["unfrozen_at_epoch"] == 2
    assert len(metrics["finetune"]["trainable_layers_after"]) == 4


def test_cli_offline_pretrained_weights_fail_fast_with_exit_code_2(tmp_path, monkeypatch, capsys):
    from cnnlab.cli import main

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("CNNLAB_OFFLINE", "1")
    path = tmp_path / "mnv2.yaml"
    path.write_text(yaml.safe_dump({
        "name": "tests/offline",
        "data": {"name": "digits", "image_size": 32, "channels": 3},
        "model": {"name": "backbone", "backbone": "timm:mobilenetv2_100", "pretrained": True},
        "train": _train(),
        "runs_dir": str(tmp_path / "runs"),
    }))
    started = time.perf_counter()
    with pytest.raises(SystemExit) as caught:
        main(["run", str(path)])
    assert time.perf_counter() - started < 10
    assert caught.value.code == 2
    err = capsys.readouterr().err.replace("\n", " ")
    assert "timm/mobilenetv2_100" in err and "model.safetensors" in err
    assert str(tmp_path / "hf") in err and "pretrained: false" in err
    failed = json.loads(next((tmp_path / "runs").rglob("metrics.json")).read_text())
    assert failed["status"] == "failed"

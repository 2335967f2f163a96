"""`plan_experiment`: parameter count, FLOPs and a projected epoch time before training."""

import torch

from cnnlab.config import validate_config
from cnnlab.plan import (STEP_PHASES, forward_flops, plan_experiment, prepare_training,
                          time_training_steps)
from conftest import tiny_experiment


def test_forward_flops_of_a_linear_layer():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 5, bias=False))
    assert forward_flops(model, (3, 2, 2)) == 2 * 12 * 5


def test_plan_projects_epochs_from_measured_steps(tmp_path):
    cfg = validate_config(tiny_experiment(tmp_path, {"name": "digits"},
                                          train={"epochs": 3, "batch_size": 32}))
    plan = plan_experiment(cfg, steps=3, warmup=1)
    assert plan.params > 0 and plan.mflops_per_image > 0
    assert plan.steps_per_epoch == -(-plan.train_images // 32)
    assert plan.seconds_per_step > 0 and plan.eval_images_per_s > 0
    assert plan.seconds_total == plan.seconds_per_epoch * 3
    assert "projected" in plan.to_text() and plan.validations == 3
    assert not list((tmp_path / "runs").glob("**/metrics.json"))  # nothing was trained or stored


def test_step_phases_add_up_to_the_step_and_plan_names_its_precision(tmp_path):
    cfg = validate_config(tiny_experiment(tmp_path, {"name": "digits"},
                                          train={"epochs": 1, "batch_size": 32}))
    data, _, lit, precision = prepare_training(cfg)
    phases: dict = {}
    median = time_training_steps(lit, data, cfg, steps=3, warmup=1, phases=phases)
    assert set(phases) == set(STEP_PHASES) and all(len(v) == 3 for v in phases.values())
    steps = sorted(sum(phases[name][i] for name in STEP_PHASES[1:]) for i in range(3))
    assert abs(steps[1] - median) < 1e-9  # the step's own phases, without the wait for data
    assert precision.precision == "32" and "precision: 32 (set in the config)" in \
        plan_experiment(cfg, steps=1, warmup=0).to_text()


def test_plan_counts_only_the_validation_passes_validation_freq_runs(tmp_path):
    cfg = validate_config(tiny_experiment(tmp_path, {"name": "digits"},
                                          train={"epochs": 5, "batch_size": 32,
                                                 "validation_freq": 2, "checkpoint": None}))
    plan = plan_experiment(cfg, steps=3, warmup=1)
    assert plan.validations == 2
    val_seconds = plan.val_images / plan.eval_images_per_s
    training = plan.seconds_per_epoch - val_seconds
    assert abs(plan.seconds_total - (5 * training + 2 * val_seconds)) < 1e-9
    assert "2 passes" in plan.to_text()


def test_ema_and_step_schedule_run_end_to_end(tmp_path):
    from cnnlab.pipeline import run_experiment

    cfg = validate_config(tiny_experiment(
        tmp_path, {"name": "digits"},
        train={"epochs": 2, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True,
               "norm_bias_lr_mult": 4.0, "ema": {"decay": 0.9},
               "schedule": {"name": "linear", "warmup": 0.2}},
        eval={"tta": "flip"}))
    outcome = run_experiment(cfg, say=lambda text: None)
    assert outcome.metrics["status"] == "completed"
    lrs = [row.split(",")[5] for row in (outcome.run_dir / "history.csv").read_text().splitlines()[1:]]
    assert float(lrs[0]) < 0.05  # the first epoch started in the warm-up


def test_plan_times_progressive_resizing_stages_separately(tmp_path):
    model = {"layers": [{"conv2d": {"filters": 4, "padding": "same"}}, {"global_avg_pool": {}}]}
    cfg = validate_config(tiny_experiment(
        tmp_path, {"name": "digits"}, model=model,
        train={"epochs": 3, "batch_size": 32, "progressive_resize": [{"epochs": 1, "size": 4}]}))
    plan = plan_experiment(cfg, steps=3, warmup=1)
    assert list(plan.resized_seconds_per_step) == [4]
    resized_epoch = plan.steps_per_epoch * plan.resized_seconds_per_step[4] + (
        plan.val_images / plan.eval_images_per_s)
    assert abs(plan.seconds_total - (2 * plan.seconds_per_epoch + resized_epoch)) < 1e-9
    assert "progressive resizing: 4 px" in plan.to_text()


def test_plan_times_steps_in_the_runs_mixed_precision(tmp_path, monkeypatch):
    from cnnlab.train.module import LitClassifier

    cfg = validate_config(tiny_experiment(tmp_path, {"name": "digits"},
                                          train={"batch_size": 32, "precision": "bf16-mixed"}))
    seen: list[torch.dtype | None] = []
    original = LitClassifier.compute_loss

    def spy(self, x, y):
        seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        return original(self, x, y)

    monkeypatch.setattr(LitClassifier, "compute_loss", spy)
    plan_experiment(cfg, steps=2, warmup=1)
    assert seen and set(seen) == {torch.bfloat16}

"""Sweep files are checked before any trial runs: bad paths, values and methods exit 2."""

from __future__ import annotations

import pytest
import yaml

from cnnlab.cli import main
from cnnlab.errors import ConfigError
from cnnlab.sweep import load_sweep
from cnnlab.sweep.config import grid_points
from cnnlab.sweep.study import mask_url
from sweep_helpers import write_sweep


def _exit(argv, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    return info.value.code, capsys.readouterr().err


@pytest.mark.parametrize("sweep, words", [
    ({"method": "random", "parameters": {"train.lrr": {"uniform": [0.001, 0.01]}}},
     ["train.lrr", "Did you mean `train.lr`"]),
    ({"method": "random", "parameters": {"train.batch_size": {"choice": [0, 32]}}},
     ["train.batch_size", "0", "greater than 0"]),
    ({"method": "grid", "parameters": {"train.lr": {"uniform": [0.001, 0.01]}}},
     ["grid needs `values:`", "train.lr"]),
    ({"method": "optuna"}, ["needs `parameters:`"]),
    ({"method": "random", "parameters": {"train.lr": {"uniform": [0.01, 0.001]}}},
     ["low 0.01 is above high 0.001"]),
    ({"method": "random", "parameters": {"train.lr": {"uniform": [0.1, 0.2], "choice": [1]}}},
     ["exactly one of"]),
    ({"method": "list", "experiments": [{"train.epochs": 0}]}, ["train.epochs", "greater than 0"]),
    ({"method": "list", "experiments": ["missing.yaml"]}, ["missing.yaml", "does not exist"]),
    ({"method": "random", "metric": "test.accuracy", "pruner": "median",
      "parameters": {"train.lr": {"uniform": [0.001, 0.01]}}}, ["prune_on"]),
    ({"method": "random", "parameters": {"train.lr": {"uniform": [0.001, 0.01]}}, "trails": 3},
     ["unknown key `trails`", "trials"]),
    ({"method": "random", "parameters": {"model.layers.7.conv2d.filters": {"choice": [8]}}},
     ["model.layers", "index 0-2"]),
])
def test_bad_sweep_files_exit_2_naming_the_problem(tmp_path, capsys, sweep, words):
    path = write_sweep(tmp_path, sweep)
    code, err = _exit(["sweep", str(path)], capsys)
    assert code == 2
    assert "Traceback" not in err
    for word in words:
        assert word in err, (word, err)
    assert not (tmp_path / "runs").exists()  # nothing ran, nothing was written


@pytest.mark.parametrize("name", ["../../escape", "a/../../b", "/abs/name"])
def test_sweep_names_never_lead_outside_runs_dir(tmp_path, capsys, name):
    path = write_sweep(tmp_path, {"method": "list", "experiments": [{}]}, name=name)
    code, err = _exit(["sweep", str(path)], capsys)
    assert code == 2 and "Traceback" not in err and "name" in err
    assert not (tmp_path / "escape").exists() and not (tmp_path.parent / "escape").exists()


def test_unreachable_storage_exits_2_with_the_password_masked(tmp_path, capsys):
    path = write_sweep(tmp_path, {"method": "random", "trials": 1,
                                  "parameters": {"train.lr": {"uniform": [0.001, 0.01]}}})
    url = "postgresql://alice:s3cret@127.0.0.1:9/nowhere"
    code, err = _exit(["sweep", str(path), "--storage", url], capsys)
    assert code == 2
    assert "s3cret" not in err and "alice:***@127.0.0.1:9/nowhere" in err
    assert not list((tmp_path / "runs").rglob("trial-*"))


def test_mask_url_hides_only_the_password():
    assert mask_url("postgresql://u:pw@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert mask_url("sqlite:////tmp/x/study.db") == "sqlite:////tmp/x/study.db"


def test_direction_is_inferred_from_the_metric(tmp_path):
    def direction(metric):
        path = write_sweep(tmp_path, {"method": "random", "metric": metric,
                                      "parameters": {"train.lr": {"uniform": [0.001, 0.01]}}})
        return load_sweep(path).sweep.resolved_direction

    assert direction("val_accuracy") == "maximize"
    assert direction("val_loss") == "minimize"
    assert direction("test.log_loss") == "minimize"
    assert direction("train_seconds") == "minimize"
    assert direction("val.macro.f1") == "maximize"


def test_grid_points_vary_the_first_parameter_slowest(tmp_path):
    path = write_sweep(tmp_path, {"method": "grid", "parameters": {
        "train.lr": {"values": [0.001, 0.01]}, "train.batch_size": {"values": [16, 32, 64]}}})
    points = grid_points(load_sweep(path).sweep)
    assert len(points) == 6 and load_sweep(path).sweep.planned_trials == 6
    assert points[0] == {"train.lr": 0.001, "train.batch_size": 16}
    assert points[3] == {"train.lr": 0.01, "train.batch_size": 16}


def test_set_overrides_apply_to_every_trial_and_are_checked(tmp_path):
    path = write_sweep(tmp_path, {"method": "list", "experiments": [{}, {"train.lr": 0.01}]})
    loaded = load_sweep(path, experiment_overrides=["train.epochs=3"])
    cfg, label = loaded.trial_config(5, {}, 1)
    assert cfg.train.epochs == 3 and cfg.train.lr == 0.01 and label == "train.lr=0.01"
    assert cfg.name == "sw/test/trial-005" and str(cfg.runs_dir) == str(tmp_path / "runs")
    with pytest.raises(ConfigError, match="train.epochs"):
        load_sweep(path, experiment_overrides=["train.epochs=-1"])


def test_list_steps_may_be_files(tmp_path):
    path = write_sweep(tmp_path, {"method": "list", "experiments": ["base.yaml", "step2.yaml"]})
    step2 = yaml.safe_load((tmp_path / "base.yaml").read_text())
    step2["train"]["lr"] = 0.005
    (tmp_path / "step2.yaml").write_text(yaml.safe_dump(step2))
    loaded = load_sweep(path)
    cfg, label = loaded.trial_config(1, {}, 1)
    assert label == "step2.yaml" and cfg.train.lr == 0.005

"""`cnnlab sweep` end to end on the digits: the four methods, pruning, a diverging trial,
resuming after an interruption, and the sweep folder as compare's input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import optuna
import pytest

from cnnlab.cli import main
from cnnlab.config import validate_config
from cnnlab.pipeline import run_experiment
from cnnlab.store import read_json
from cnnlab.sweep import load_sweep, run_sweep
from cnnlab.sweep.study import requeue_interrupted
from cnnlab.sweep.worker import SweepPruning, metric_value
from conftest import tiny_experiment
from sweep_helpers import write_sweep


def _cli(argv, capsys) -> tuple[int, str]:
    code = 0
    try:
        main(argv)
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out + out.err


def _trials(folder: Path) -> list[dict]:
    with open(folder / "trials.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_list_sweep_runs_steps_in_order_and_goes_on_after_a_diverged_one(tmp_path, capsys):
    path = write_sweep(tmp_path, {"method": "list", "experiments": [
        {"train.lr": 0.002},
        {"train.optimizer": "sgd", "train.lr": 1.0e30},  # diverges at once
        {"train.lr": 0.004}]})
    code, out = _cli(["sweep", str(path)], capsys)
    assert code == 0, out
    folder = tmp_path / "runs" / "sw" / "test"
    rows = _trials(folder)
    assert [r["step"] for r in rows] == ["0", "1", "2"]
    assert [r["status"] for r in rows] == ["completed", "diverged", "completed"]
    assert [r["state"] for r in rows] == ["COMPLETE", "FAIL", "COMPLETE"]
    assert rows[1]["label"] == "train.optimizer=sgd, train.lr=1e+30"
    status = read_json(folder / "sweep.json")
    assert status["status"] == "completed" and status["trials_planned"] == 3
    run = folder / rows[2]["run_dir"]
    metrics = read_json(run / "metrics.json")
    assert metrics["name"] == "sw/test/trial-002"
    assert metrics["sweep"]["trial"] == 2 and metrics["sweep"]["label"] == "train.lr=0.004"
    assert float(rows[2]["value"]) == pytest.approx(metrics["val"]["accuracy"])
    assert (folder / "trials.md").read_text().count("\n") == 5  # header, rule, 3 rows
    assert "best: trial" in out

    # The sweep folder is an input of compare: one row per trial (the diverged one with --all).
    code, text = _cli(["compare", str(folder), "--format", "json", "--all"], capsys)
    assert code == 0
    names = {row["name"] for row in json.loads(text)["rows"]}
    assert names == {f"sw/test/trial-00{i}" for i in range(3)}


def test_grid_random_and_optuna_sweeps_record_their_parameters(tmp_path):
    grid = write_sweep(tmp_path / "g", {"method": "grid", "parameters": {
        "train.lr": {"values": [0.001, 0.003]},
        "model.layers.0.conv2d.filters": {"values": [2, 4]}}})
    outcome = run_sweep(load_sweep(grid), say=lambda text: None)
    rows = _trials(outcome.folder)
    assert outcome.status == "completed" and len(rows) == 4
    assert [(r["train.lr"], r["model.layers.0.conv2d.filters"]) for r in rows] == [
        ("0.001", "2"), ("0.001", "4"), ("0.003", "2"), ("0.003", "4")]
    config = (outcome.folder / rows[1]["run_dir"] / "config.yaml").read_text()
    assert "filters: 4" in config

    for method in ("random", "optuna"):
        path = write_sweep(tmp_path / method, {
            "method": method, "trials": 3, "startup_trials": 1, "seed": 3,
            "parameters": {"train.lr": {"log_uniform": [1.0e-4, 1.0e-2]},
                           "train.batch_size": {"choice": [32, 64]},
                           "model.layers.0.conv2d.filters": {"int": [2, 6]}}})
        outcome = run_sweep(load_sweep(path), say=lambda text: None)
        rows = _trials(outcome.folder)
        assert outcome.status == "completed" and len(rows) == 3, method
        for row in rows:
            assert 1e-4 <= float(row["train.lr"]) <= 1e-2
            assert row["train.batch_size"] in ("32", "64")
            cfg = validate_config(__import__("yaml").safe_load(
                (outcome.folder / row["run_dir"] / "config.yaml").read_text()))
            assert cfg.train.lr == pytest.approx(float(row["train.lr"]))
            assert cfg.train.batch_size == int(row["train.batch_size"])
        assert outcome.best is not None and outcome.best["value"] == max(
            float(r["value"]) for r in rows)


class _AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study, trial) -> bool:
        return True


def test_a_pruned_trial_stops_after_its_epoch_and_its_run_says_so(tmp_path):
    study = optuna.create_study(direction="maximize", pruner=_AlwaysPrune())
    trial = study.ask()
    callback = SweepPruning(trial, "val_accuracy")
    cfg = validate_config(tiny_experiment(
        tmp_path, {"name": "digits", "val_split": 0.2, "test_split": 0.2},
        train={"epochs": 4, "batch_size": 128}))
    outcome = run_experiment(cfg, say=lambda text: None, callbacks=[callback])
    assert outcome.metrics["status"] == "pruned"
    assert outcome.metrics["epochs_run"] == 1 and callback.pruned_at_epoch == 1
    assert "pruned by the sweep's pruner after epoch 1" in outcome.metrics["stop_reason"]
    assert "val" not in outcome.metrics  # not evaluated
    assert trial.number == 0 and study.trials[0].intermediate_values  # reported to Optuna


def test_median_pruner_prunes_within_a_sweep(tmp_path):
    # Trial 0 learns (lr 3e-3); later trials barely move (lr 1e-6) and fall below its median.
    path = write_sweep(tmp_path, {"method": "optuna", "trials": 3, "seed": 0,
                                  "startup_trials": 1,
                                  "pruner": {"name": "median", "startup_trials": 1,
                                             "warmup_epochs": 0},
                                  "parameters": {"train.lr": {"choice": [0.003, 1.0e-6]}}},
                       epochs=3)
    loaded = load_sweep(path)
    study_first = {"train.lr": 0.003}
    import cnnlab.sweep.runner as runner

    original = runner.enqueue_points
    runner.enqueue_points = lambda study, points: [study.enqueue_trial(study_first),
                                                   study.enqueue_trial({"train.lr": 1e-6})]
    try:
        outcome = run_sweep(loaded, say=lambda text: None)
    finally:
        runner.enqueue_points = original
    rows = _trials(outcome.folder)
    pruned = [r for r in rows if r["state"] == "PRUNED"]
    assert pruned, rows
    metrics = read_json(outcome.folder / pruned[0]["run_dir"] / "metrics.json")
    assert metrics["status"] == "pruned" and metrics["pruned_at_epoch"] < 3
    assert outcome.status == "completed"


def test_resume_requeues_an_interrupted_trial_once(tmp_path):
    path = write_sweep(tmp_path, {"method": "random", "trials": 2,
                                  "parameters": {"train.lr": {"uniform": [0.001, 0.01]}}})
    loaded = load_sweep(path)
    # A sweep stopped by Ctrl+C leaves its trial FAIL with no final status: simulate one.
    folder = loaded.folder
    folder.mkdir(parents=True)
    from cnnlab.sweep.study import create_study, default_storage_url, open_storage

    study = create_study(open_storage(default_storage_url(folder), loaded.sweep), "sw/test",
                         loaded.sweep, 1, load=False)
    trial = study.ask({"train.lr": optuna.distributions.FloatDistribution(0.001, 0.01)})
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    (folder / "sweep.json").write_text(json.dumps({"storage": default_storage_url(folder)}))
    assert requeue_interrupted(study) == [0]
    assert requeue_interrupted(study) == []  # already queued: not twice

    outcome = run_sweep(loaded, resume=True, say=lambda text: None)
    rows = _trials(folder)
    assert outcome.status == "completed"
    assert [r["state"] for r in rows] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert float(rows[1]["train.lr"]) == pytest.approx(trial.params["train.lr"])
    # The sampler does not start its seeded sequence over: the new trial draws a new value.
    assert float(rows[2]["train.lr"]) != pytest.approx(trial.params["train.lr"])


def test_resume_continues_an_interrupted_trial_from_its_checkpoint(tmp_path, monkeypatch):
    import cnnlab.train.fit as fit

    path = write_sweep(tmp_path, {"method": "list", "experiments": [{"train.lr": 0.002}]},
                       epochs=3)
    loaded = load_sweep(path)
    original = fit.EpochRecorder.on_train_epoch_start
    started: list[int] = []

    def ctrl_c_in_third_epoch(self, trainer, pl_module):
        started.append(trainer.current_epoch)
        original(self, trainer, pl_module)
        if trainer.current_epoch == 2 and len(started) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(fit.EpochRecorder, "on_train_epoch_start", ctrl_c_in_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(loaded, say=lambda text: None)
    first = next(loaded.folder.parent.rglob("trial-000"))
    [run_dir] = list(first.iterdir())
    assert read_json(run_dir / "metrics.json")["status"] == "interrupted"

    notes: list[str] = []
    outcome = run_sweep(loaded, resume=True, say=notes.append)
    assert outcome.status == "completed"
    assert started == [0, 1, 2, 2]  # the second sitting trained only the epoch that was cut
    metrics = read_json(run_dir / "metrics.json")
    assert metrics["status"] == "completed" and metrics["epochs_run"] == 3
    assert metrics["sweep"]["trial"] == 1  # recorded as the retry's trial
    assert [row["epoch"] for row in _history(run_dir)] == ["1", "2", "3"]
    rows = _trials(loaded.folder)
    assert [r["state"] for r in rows] == ["FAIL", "COMPLETE"]
    assert (loaded.folder / rows[1]["run_dir"]).resolve() == run_dir.resolve()
    assert not list(loaded.folder.parent.rglob("trial-001"))  # no second folder
    assert any("continues" in note for note in notes)


def test_a_retry_chain_leads_back_to_the_folder_a_killed_worker_left(tmp_path):
    from datetime import datetime

    from cnnlab.sweep.worker import interrupted_run

    loaded = load_sweep(write_sweep(tmp_path, {"method": "list", "experiments": [{}]}))
    killed = loaded.folder / "trial-000"
    old, newest = killed / "20261201-000000-aaaa", killed / "20261201-000001-bbbb"
    for folder in (old, newest):
        (folder / "checkpoints").mkdir(parents=True)
        (folder / "checkpoints" / "last.ckpt").write_bytes(b"x")
        (folder / "metrics.json").write_text(json.dumps({"status": "running"}))
        (folder / "config.yaml").write_text("name: sw/test/trial-000\n")  # what marks a run

    def frozen(number, user=None, system=None):
        return optuna.trial.FrozenTrial(
            number=number, trial_id=number, state=optuna.trial.TrialState.FAIL, value=None,
            datetime_start=datetime.now(), datetime_complete=None, params={}, distributions={},
            user_attrs=user or {}, system_attrs=system or {}, intermediate_values={})

    # 0 was killed before recording its folder; 1 (Optuna's stale-trial retry of 0) continued
    # it and was stopped again; 2 (a --resume requeue of 1) must continue the same folder.
    relative = str(newest.relative_to(loaded.folder))  # as the worker records it
    trials = [frozen(0), frozen(1, {"run_dir": relative}, {"failed_trial": 0}),
              frozen(2, {"retry_of": 1})]
    assert interrupted_run(loaded, trials, 2).resolve() == newest.resolve()
    assert interrupted_run(loaded, trials[:1] + [frozen(1, system={"failed_trial": 0})], 1) \
        .resolve() == newest.resolve()  # found by the killed trial's name
    assert interrupted_run(loaded, trials, 0) is None  # a first attempt continues nothing
    (newest / "metrics.json").write_text(json.dumps({"status": "completed"}))
    assert interrupted_run(loaded, trials, 2) is None  # finished: nothing to continue
    (newest / "metrics.json").write_text(json.dumps({"status": "interrupted"}))
    (newest / "checkpoints" / "last.ckpt").unlink()
    assert interrupted_run(loaded, trials, 2) is None  # stopped before its first epoch ended


def _history(run_dir: Path) -> list[dict]:
    with open(run_dir / "history.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_starting_an_existing_sweep_again_needs_resume(tmp_path, capsys):
    path = write_sweep(tmp_path, {"method": "list", "experiments": [{}]})
    run_sweep(load_sweep(path), say=lambda text: None)
    code, text = _cli(["sweep", str(path)], capsys)
    assert code == 2 and "--resume" in text


def test_metric_value_reads_aliases_history_and_dotted_paths():
    metrics = {"val": {"accuracy": 0.9, "log_loss": 0.3, "macro": {"f1": 0.8}},
               "best_epoch": 2, "train_seconds": 12.5}
    history = [{"epoch": 1, "accuracy": 0.5}, {"epoch": 2, "accuracy": 0.7}]
    assert metric_value(metrics, history, "val_accuracy") == 0.9
    assert metric_value(metrics, history, "val_loss") == 0.3
    assert metric_value(metrics, history, "val.macro.f1") == 0.8
    assert metric_value(metrics, history, "accuracy") == 0.7
    assert metric_value(metrics, history, "train_seconds") == 12.5
    assert metric_value(metrics, history, "test.accuracy") is None


def test_a_sweep_logged_to_mlflow_is_one_parent_run_with_a_child_per_trial(tmp_path, capsys):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    path = write_sweep(tmp_path, {"method": "list", "experiments": [{}, {"train.lr": 0.004}]})
    code, out = _cli(["sweep", str(path), "--mlflow", uri], capsys)
    assert code == 0, out
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("sw")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("cnnlab.kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 2
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert sorted(r.data.tags["trial"] for r in children) == ["0", "1"]

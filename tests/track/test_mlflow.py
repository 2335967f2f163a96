"""Tracking against a real MLflow server: what a run logs, read back through the MLflow client,
a file: store, TensorBoard event files, and a server that is down or dies during training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from cnnlab.config import validate_config
from cnnlab.errors import ConfigError
from cnnlab.pipeline import run_experiment
from cnnlab.track.mlflow_run import RUN_TAG, child_tags, parent_run
from conftest import cli, tiny_experiment
from mlflow_server import free_port, mlflow_uri, start_server, stop_server  # noqa: F401

mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402




def digits_cfg(tmp_path: Path, name: str, epochs: int = 2, **tracking) -> dict:
    cfg = tiny_experiment(tmp_path, {"name": "digits"}, name=name)
    cfg["train"]["epochs"] = epochs
    cfg["tracking"] = tracking
    return cfg


def write_cfg(tmp_path: Path, cfg: dict) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_dirs(tmp_path: Path) -> list[Path]:
    return sorted(p.parent for p in (tmp_path / "runs").rglob("metrics.json"))


def runs_tagged(uri: str, experiment: str, key: str) -> list:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], filter_string=f"tags.`{RUN_TAG}` = '{key}'")


@pytest.fixture(scope="module")
def logged_run(mlflow_uri, tmp_path_factory):
    """One 2-epoch digits run logged live to the server, with TensorBoard on."""
    tmp = tmp_path_factory.mktemp("logged")
    cfg = digits_cfg(tmp, "trackme/live", mlflow=mlflow_uri, tensorboard=True, tags={"sweep": "s1", "trial": "3"})
    cfg["train"]["seed"] = 7
    outcome = run_experiment(validate_config(cfg, source="test"), say=lambda text: None)
    return outcome


def test_server_holds_params_epoch_metrics_final_scores_artifacts_and_tags(logged_run, mlflow_uri):
    # Logged live through --mlflow's config key: the run folder names its MLflow run.
    assert logged_run.metrics["status"] == "completed"
    state = json.loads((logged_run.run_dir / "tracking.json").read_text())["mlflow"]
    assert state["status"] == "logged" and state["experiment"] == "trackme"
    client = MlflowClient(mlflow_uri)
    run = client.get_run(state["run_id"])
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["train.epochs"] == "2" and params["data.name"] == "digits"
    assert params["model.layers.0.filters"] == "4"
    history = client.get_metric_history(state["run_id"], "val_accuracy")
    assert [m.step for m in history] == [1, 2]
    recorded = [row["val_accuracy"] for row in logged_run_history(logged_run.run_dir)]
    assert [m.value for m in history] == pytest.approx(recorded)
    metrics = run.data.metrics
    assert metrics["test.accuracy"] == pytest.approx(logged_run.metrics["test"]["accuracy"])
    assert "test.per_class.7.f1" in metrics
    artifacts = {a.path for a in client.list_artifacts(state["run_id"])}
    assert {"model.safetensors", "curves.png", "confusion_matrix.png", "metrics.json",
            "config.yaml"} <= artifacts
    tags = run.data.tags
    assert tags[RUN_TAG] == f"trackme/live/{logged_run.run_dir.name}"
    assert tags["seed"] == "7" and tags["sweep"] == "s1" and tags["trial"] == "3"
    assert tags["recipe"] == "trackme/live" and "git_sha" in tags


def logged_run_history(run_dir: Path) -> list[dict]:
    from cnnlab.store import read_history

    return read_history(run_dir)


def test_tensorboard_event_files_hold_each_epoch(logged_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(logged_run.run_dir / "tensorboard"))
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert {"loss", "val_accuracy"} <= set(scalars)
    values = [e.value for e in events.Scalars("val_accuracy")]
    recorded = [row["val_accuracy"] for row in logged_run_history(logged_run.run_dir)]
    assert values == pytest.approx(recorded, abs=1e-6)


def test_file_store(tmp_path):
    store = tmp_path / "mlruns"
    cfg = digits_cfg(tmp_path, "filestore/x", epochs=1, mlflow=f"file:{store}")
    outcome = run_experiment(validate_config(cfg, source="test"), say=lambda text: None)
    state = json.loads((outcome.run_dir / "tracking.json").read_text())["mlflow"]
    assert state["status"] == "logged"
    client = MlflowClient(f"file:{store}")
    run = client.get_run(state["run_id"])
    assert run.data.params["train.epochs"] == "1"
    assert "model.safetensors" in {a.path for a in client.list_artifacts(state["run_id"])}


def test_malformed_uri_exits_2_before_training(tmp_path, capsys):
    path = write_cfg(tmp_path, digits_cfg(tmp_path, "bad/uri"))
    code, out, err = cli(["run", str(path), "--mlflow", "htp//127.0.0.1:5000"], capsys)
    assert code == 2 and "tracking.mlflow" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_mlflow_true_needs_the_environment_variable(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    path = write_cfg(tmp_path, digits_cfg(tmp_path, "bad/env", mlflow=True))
    code, out, err = cli(["run", str(path)], capsys)
    assert code == 2 and "MLFLOW_TRACKING_URI" in err


def test_unreachable_server_run_completes_then_sync_uploads_once(tmp_path, mlflow_uri, capsys):
    dead = f"http://127.0.0.1:{free_port()}"
    path = write_cfg(tmp_path, digits_cfg(tmp_path, "offline/run"))
    code, out, err = cli(["run", str(path), "--mlflow", dead], capsys)
    assert code == 0, out + err
    assert (out + err).count("warning: MLflow") == 1
    (run_dir,) = run_dirs(tmp_path)
    assert json.loads((run_dir / "tracking.json").read_text())["mlflow"]["status"] == "pending"
    assert (run_dir / "model.safetensors").is_file()

    for _ in range(2):  # the second sync must not create a second MLflow run
        code, out, err = cli(["sync", str(tmp_path / "runs"), "--mlflow", mlflow_uri], capsys)
        assert code == 0, out + err
    assert "already synced" in out and "new files" not in out
    (run_dir / "report.html").write_text("<html>written later by cnnlab report</html>")
    code, out, err = cli(["sync", "offline/*", "--runs-dir", str(tmp_path / "runs"),
                          "--mlflow", mlflow_uri], capsys)
    assert code == 0 and "already synced, 1 new files" in out
    (synced,) = runs_tagged(mlflow_uri, "offline", f"offline/run/{run_dir.name}")
    assert [m.step for m in MlflowClient(mlflow_uri).get_metric_history(
        synced.info.run_id, "loss")] == [1, 2]
    state = json.loads((run_dir / "tracking.json").read_text())["mlflow"]
    assert state == {**state, "status": "logged", "run_id": synced.info.run_id}
    assert "report.html" in {a.path for a in MlflowClient(mlflow_uri).list_artifacts(
        synced.info.run_id)}


def test_server_killed_mid_run(tmp_path, mlflow_uri):
    proc, uri = start_server(tmp_path / "doomed")
    lines: list[str] = []

    def say(text: str) -> None:
        lines.append(text)
        if text.startswith("data:"):  # the MLflow run exists by now; training has not started
            stop_server(proc)

    try:
        cfg = digits_cfg(tmp_path, "killed/run", mlflow=uri)
        outcome = run_experiment(validate_config(cfg, source="test"), say=say)
    finally:
        stop_server(proc)
    assert outcome.metrics["status"] == "completed"
    assert sum(line.startswith("warning: MLflow") for line in lines) == 1
    state = json.loads((outcome.run_dir / "tracking.json").read_text())["mlflow"]
    assert state["status"] == "pending" and state["run_id"]

    from cnnlab.track import sync_run

    assert sync_run(outcome.run_dir, mlflow_uri)[1] == "created"
    assert sync_run(outcome.run_dir, mlflow_uri)[1] == "already synced"
    assert len(runs_tagged(mlflow_uri, "killed", f"killed/run/{outcome.run_dir.name}")) == 1


def test_sweep_trials_nest_under_a_parent_run(tmp_path, mlflow_uri):
    with parent_run(mlflow_uri, "sweeps", "sweep-a") as parent_id:
        cfg = digits_cfg(tmp_path, "sweeps/trial", epochs=1, mlflow=mlflow_uri,
                         tags=child_tags(parent_id, sweep="sweep-a", trial=0))
        outcome = run_experiment(validate_config(cfg, source="test"), say=lambda text: None)
    client = MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name("sweeps")
    children = client.search_runs([exp.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
    assert [c.data.tags[RUN_TAG] for c in children] == [f"sweeps/trial/{outcome.run_dir.name}"]
    assert client.get_run(parent_id).info.status == "FINISHED"


def test_tracking_section_refuses_unknown_keys():
    with pytest.raises(ConfigError, match="tracking"):
        validate_config({"name": "a", "tracking": {"mlfow": "http://x:1"}}, source="test")

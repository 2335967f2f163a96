"""One cnnlab run as one MLflow run: live logging while training, and ``sync`` from a run folder.

Every MLflow run cnnlab creates carries the tag ``cnnlab.run_id`` (``<experiment name>/<run
id>``) and, once everything is uploaded, ``cnnlab.complete = true``. Both the live tracker and
``sync_run`` look the tag up before creating a run, so uploading a folder twice (or a run that
was logged live) creates no duplicate. The MLflow run id is kept in the run folder's
``tracking.json``.

A server that is down or goes away never stops training: the first failed call prints one
warning, the tracker stops calling MLflow, and ``tracking.json`` says the run is pending
(``cnnlab sync RUN --mlflow URI`` uploads it).

Why MlflowClient and not Lightning's MLFlowLogger: the logger raises from inside
``trainer.fit`` when the server is gone (ending the run), logs at the global step rather than
the epoch, and cannot upload a finished folder; with the client, live logging and ``sync``
share one code path and one layout. TensorBoard does go through Lightning's logger.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from cnnlab.store import read_history, read_json, write_json
from cnnlab.track.flatten import flatten_params, numeric_leaves, safe_key

Say = Callable[[str], None]
TRACKING_FILE = "tracking.json"
RUN_TAG = "cnnlab.run_id"
COMPLETE_TAG = "cnnlab.complete"
# Files of a run folder worth having beside the MLflow run (checkpoints and event files stay).
ARTIFACT_GLOBS = ("*.png", "report.html", "report.md", "*.csv", "metrics.json", "config.yaml",
                  "summary.txt", "data.json", "layers.json", "model.safetensors")
_STATUS = {"completed": "FINISHED", "diverged": "FAILED", "failed": "FAILED",
           "interrupted": "KILLED"}
_BATCH = 500  # log_batch takes at most 1000 metrics / 100 params per call


def run_key(run_dir: Path, name: str) -> str:
    return f"{name}/{Path(run_dir).name}"


def default_experiment(name: str) -> str:
    return name.split("/", 1)[0]


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    if uri.startswith("file:"):
        # MLflow 3 keeps its file store in maintenance mode and refuses it unless asked: a
        # `file:` URI in the experiment is that request (sqlite:/// is the maintained choice).
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")

    return MlflowClient(tracking_uri=uri)


def _experiment_id(client, experiment: str) -> str:
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            client.restore_experiment(found.experiment_id)
        return found.experiment_id
    try:
        return client.create_experiment(experiment, artifact_location=_artifact_root(client))
    except Exception:  # created meanwhile by another process (sweep workers, DDP ranks)
        found = client.get_experiment_by_name(experiment)
        if found is None:
            raise
        return found.experiment_id


def _artifact_root(client) -> str | None:
    """Beside a database store, not MLflow's default ./mlruns in whatever folder cnnlab runs
    from; servers (http) and file stores choose their own."""
    from urllib.parse import urlsplit

    uri = client.tracking_uri
    if not uri.startswith(("sqlite:", "postgresql", "mysql", "mssql")):
        return None
    path = urlsplit(uri).path
    if uri.startswith("sqlite:") and path not in ("", "/", "/:memory:"):
        return (Path(path[1:] if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////")
                     else path).resolve().parent / "mlartifacts").as_uri()
    return None


def find_run(client, experiment_id: str, key: str):
    """The active MLflow run tagged with cnnlab run id ``key``, or None."""
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{RUN_TAG}` = '{key}'",
                              max_results=5)
    return runs[0] if runs else None


def run_tags(cfg: Mapping[str, Any], record: Mapping[str, Any], key: str) -> dict[str, str]:
    """What a run is, as MLflow tags: recipe, seed, git sha, seed group, sweep/trial and the
    ``tracking.tags`` of its config (``mlflow.parentRunId`` makes it a sweep's child run)."""
    tags = {RUN_TAG: key, "mlflow.runName": key, "recipe": str(cfg.get("name")),
            "seed": str(cfg.get("train", {}).get("seed"))}
    sha = record.get("git_sha")
    if sha:
        tags.update({"git_sha": sha, "mlflow.source.git.commit": sha})
    if record.get("group"):
        tags["seed_group"] = str(record["group"])
    if record.get("world_size"):
        tags["world_size"] = str(record["world_size"])
    tags.update({str(k): str(v) for k, v in (cfg.get("tracking", {}).get("tags") or {}).items()})
    return tags


def history_metrics(rows: list[Mapping[str, Any]]) -> list:
    """history.csv rows as MLflow metrics with step = epoch (NaN cells are skipped)."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    out = []
    for row in rows:
        epoch = int(row["epoch"])
        for key, value in numeric_leaves({k: v for k, v in row.items() if k != "epoch"}):
            out.append(Metric(key, value, now, epoch))
    return out


def final_metrics(record: Mapping[str, Any]) -> list:
    """val/test scores of metrics.json (accuracy, log loss, macro/weighted and per class)."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    scores = {split: record[split] for split in ("val", "test") if isinstance(record.get(split), dict)}
    extra = {k: record[k] for k in ("train_seconds", "epochs_run", "best_epoch",
                                    "predict_images_per_s") if record.get(k) is not None}
    return [Metric(k, v, now, 0) for k, v in numeric_leaves({**scores, **extra})]


def _log_batch(client, run_id: str, metrics=(), params=(), tags=()) -> None:
    metrics, params, tags = list(metrics), list(params), list(tags)
    for start in range(0, len(metrics), _BATCH):
        client.log_batch(run_id, metrics=metrics[start:start + _BATCH])
    for start in range(0, len(params), 100):
        client.log_batch(run_id, params=params[start:start + 100])
    for start in range(0, len(tags), 100):
        client.log_batch(run_id, tags=tags[start:start + 100])


def _params_and_tags(cfg: Mapping[str, Any], tags: Mapping[str, str]):
    from mlflow.entities import Param, RunTag

    return ([Param(k, v) for k, v in flatten_params(cfg).items()],
            [RunTag(k, v) for k, v in tags.items()])


def upload_results(client, run_id: str, run_dir: Path, record: Mapping[str, Any]) -> None:
    """Final scores, artifacts and the run's end status; then the run is marked complete."""
    _log_batch(client, run_id, metrics=final_metrics(record))
    for path in _artifact_files(run_dir):
        client.log_artifact(run_id, str(path))
    client.set_tag(run_id, COMPLETE_TAG, "true")
    client.set_terminated(run_id, _STATUS.get(record.get("status"), "FINISHED"))


def _artifact_files(run_dir: Path) -> list[Path]:
    return [path for pattern in ARTIFACT_GLOBS for path in sorted(Path(run_dir).glob(pattern))]


def _write_state(run_dir: Path, state: Mapping[str, Any]) -> None:
    write_json(Path(run_dir) / TRACKING_FILE, {"mlflow": dict(state)})


def read_state(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / TRACKING_FILE
    return read_json(path).get("mlflow", {}) if path.is_file() else {}


class MlflowTracker:
    """Logs a run to MLflow while it trains; never raises, never retries after a failure."""

    def __init__(self, uri: str, experiment: str, run_dir: Path, name: str, *, say: Say) -> None:
        self.uri, self.experiment, self.run_dir = uri, experiment, Path(run_dir)
        self.key = run_key(run_dir, name)
        self.say = say
        self.client = None
        self.run_id: str | None = None
        self.error: str | None = None
        # A dead server must cost one quick failure, not mlflow's default 7 retries with backoff
        # (minutes per call); a user's own settings win.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")

    @property
    def alive(self) -> bool:
        return self.error is None

    def _guard(self, what: str, action: Callable[[], Any]) -> Any:
        if not self.alive:
            return None
        try:
            return action()
        except Exception as exc:  # any failure of the server or the network: keep training
            self.error = f"{what}: {type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
            self.say(f"warning: MLflow at {self.uri} failed ({self.error}); training goes on and "
                     f"the run folder stays complete: upload it later with `cnnlab sync "
                     f"{self.run_dir} --mlflow {self.uri}`")
            self._save("pending")
            return None

    def _save(self, status: str) -> None:
        _write_state(self.run_dir, {"uri": self.uri, "experiment": self.experiment,
                                    "run_id": self.run_id, "status": status,
                                    **({"error": self.error} if self.error else {})})

    def start(self, cfg: Mapping[str, Any], record: Mapping[str, Any]) -> None:
        def begin() -> None:
            self.client = _client(self.uri)
            experiment_id = _experiment_id(self.client, self.experiment)
            existing = find_run(self.client, experiment_id, self.key)  # a resumed run
            if existing is not None:
                self.run_id = existing.info.run_id
                self.client.update_run(self.run_id, status="RUNNING")
            else:
                self.run_id = self.client.create_run(experiment_id, run_name=self.key,
                                                     tags={RUN_TAG: self.key}).info.run_id
            params, tags = _params_and_tags(cfg, run_tags(cfg, record, self.key))
            _log_batch(self.client, self.run_id, params=params if existing is None else (),
                       tags=tags)
            self._save("running")

        self._guard("starting the run", begin)

    def log_epoch(self, row: Mapping[str, Any]) -> None:
        self._guard(f"epoch {row.get('epoch')}", lambda: _log_batch(
            self.client, self.run_id, metrics=history_metrics([row])))

    def finish(self, record: Mapping[str, Any]) -> None:
        if not self.alive or self.run_id is None:
            return
        self._guard("uploading results",
                    lambda: upload_results(self.client, self.run_id, self.run_dir, record))
        if self.alive:
            self._save("logged")


def sync_run(run_dir: Path, uri: str, *, experiment: str | None = None) -> tuple[str, str]:
    """Upload a run folder to MLflow: ``(mlflow run id, "created" | "already synced")``.

    Idempotent: a run already complete in MLflow is left alone; one left half-logged (its server
    went away during training) is replaced by a complete one.
    """
    from cnnlab.store import open_run

    run_dir = open_run(Path(run_dir))
    cfg = read_json_or_yaml(run_dir / "config.yaml")
    record = read_json(run_dir / "metrics.json") if (run_dir / "metrics.json").is_file() else {}
    experiment = experiment or (cfg.get("tracking") or {}).get("experiment") or \
        default_experiment(str(cfg.get("name")))
    key = run_key(run_dir, str(cfg.get("name")))
    client = _client(uri)
    experiment_id = _experiment_id(client, experiment)
    existing = find_run(client, experiment_id, key)
    if existing is not None and existing.data.tags.get(COMPLETE_TAG) == "true":
        run_id = existing.info.run_id
        # Files written since (report.html after `cnnlab report`) join the same run.
        present = {a.path for a in client.list_artifacts(run_id)}
        new = [path for path in _artifact_files(run_dir) if path.name not in present]
        for path in new:
            client.log_artifact(run_id, str(path))
        _write_state(run_dir, {"uri": uri, "experiment": experiment, "run_id": run_id,
                               "status": "logged"})
        return run_id, f"already synced, {len(new)} new files" if new else "already synced"
    if existing is not None:
        client.delete_run(existing.info.run_id)
    run_id = client.create_run(experiment_id, run_name=key, tags={RUN_TAG: key}).info.run_id
    params, tags = _params_and_tags(cfg, run_tags(cfg, record, key))
    _log_batch(client, run_id, metrics=history_metrics(read_history(run_dir)), params=params,
               tags=tags)
    upload_results(client, run_id, run_dir, record)
    _write_state(run_dir, {"uri": uri, "experiment": experiment, "run_id": run_id,
                           "status": "logged"})
    return run_id, "created"


def read_json_or_yaml(path: Path) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}


@contextmanager
def parent_run(uri: str, experiment: str, name: str, *,
               tags: Mapping[str, str] | None = None) -> Iterator[str]:
    """A parent MLflow run for a sweep; yields its run id.

    Each trial joins it as a child run by carrying the tag ``mlflow.parentRunId`` in its
    config (:func:`child_tags`), so trials in other processes or machines nest under it too.
    The parent ends FINISHED, or FAILED if the block raises.
    """
    client = _client(uri)
    experiment_id = _experiment_id(client, experiment)
    run_id = client.create_run(experiment_id, run_name=name,
                               tags={"cnnlab.kind": "sweep", **dict(tags or {})}).info.run_id
    try:
        yield run_id
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")


def child_tags(parent_run_id: str, *, sweep: str | None = None,
               trial: int | None = None) -> dict[str, str]:
    """``tracking.tags`` for one trial of a sweep logged under ``parent_run_id``."""
    tags = {"mlflow.parentRunId": parent_run_id}
    if sweep is not None:
        tags["sweep"] = sweep
    if trial is not None:
        tags["trial"] = str(trial)
    return tags


__all__ = ["MlflowTracker", "child_tags", "parent_run", "read_state", "sync_run", "safe_key"]

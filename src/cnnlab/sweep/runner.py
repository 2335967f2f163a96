"""``run_sweep``: the sweep folder, the study, N local workers, and what is left at the end.

The table of contents of ``cnnlab sweep FILE``: open the folder (new, or ``--resume``), open
the storage and the study (queueing list/grid points once), run the workers (in this process
for one, spawned processes for several), then write the trials table, sweep.json and the
sweep's report page.
"""

from __future__ import annotations

import multiprocessing
from contextlib import contextmanager
import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

import optuna

from cnnlab.errors import ConfigError
import yaml

from cnnlab.store import read_json, write_json, write_yaml
from cnnlab.sweep.config import LoadedSweep
from cnnlab.sweep.study import (create_study, default_storage_url, enqueue_points, mask_url,
                                open_storage, progress, requeue_interrupted)
from cnnlab.sweep.tables import trial_rows, write_trial_tables
from cnnlab.sweep.worker import queue_points, run_worker

Say = Callable[[str], None]


@dataclass
class SweepOutcome:
    folder: Path
    status: str  # completed | incomplete | interrupted
    planned: int
    done: int
    best: dict[str, Any] | None
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    report: Path | None = None


def run_sweep(loaded: LoadedSweep, *, workers: int = 1, storage: str | None = None,
              resume: bool = False, threads: int | None = None, say: Say = print) -> SweepOutcome:
    """Run (or, with ``resume``, continue or join) a sweep; ``threads`` per worker defaults to
    the cores shared out between the workers."""
    sweep = loaded.sweep
    folder = loaded.folder
    if not resume and (folder / "sweep.json").exists():
        raise ConfigError(f"The sweep folder {folder} exists already: continue that sweep with "
                          "--resume (also how a worker on another machine joins it), or give "
                          "this one another name.")
    url = _storage_url(loaded, storage, resume)
    if url.startswith("sqlite"):
        folder.mkdir(parents=True, exist_ok=True)
    db = open_storage(url, sweep)
    epochs = loaded.trial_config(0, {}, 0 if sweep.method == "list" else None)[0].train.epochs
    notes: list[str] = []
    if resume:
        study = create_study(db, sweep.name, sweep, epochs, load=True)
        _check_same_sweep(loaded)
        optuna.storages.fail_stale_trials(study)
        requeued = requeue_interrupted(study)
        if requeued:
            notes.append(f"queued again: trial(s) {', '.join(map(str, requeued))} (stopped early)")
    else:
        study = create_study(db, sweep.name, sweep, epochs, load=False)
        enqueue_points(study, queue_points(loaded))
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "sweep.yaml").exists():
        write_yaml(folder / "sweep.yaml", {**sweep.model_dump(mode="json", exclude_none=True),
                                           "source": str(loaded.path),
                                           "experiment_overrides": loaded.overrides})
    _write_status(folder, loaded, url, "running", created=not resume)

    status = "interrupted"
    try:
        with _mlflow_parent(loaded, say):
            failures = _run_workers(loaded, url, workers, threads, say)
        counts = progress(study)
        status = "completed" if counts["done"] >= sweep.planned_trials and not (
            counts["waiting"] or counts["running"]) else "incomplete"
        notes.extend(failures)
    finally:
        write_trial_tables(folder, study)
        _write_status(folder, loaded, url, status)
    rows, _ = trial_rows(study)
    outcome = SweepOutcome(folder, status, sweep.planned_trials, progress(study)["done"],
                           _best(study), rows, notes)
    outcome.report = _write_report(folder, url, notes)
    return outcome


def _storage_url(loaded: LoadedSweep, storage: str | None, resume: bool) -> str:
    if storage:
        return storage
    status_file = loaded.folder / "sweep.json"
    if resume and status_file.is_file():
        recorded = read_json(status_file).get("storage", "")
        if recorded and not recorded.startswith("sqlite"):
            raise ConfigError(f"This sweep keeps its trials in {recorded}: pass --storage URL "
                              "again with --resume (passwords are not recorded).")
    if resume and not (loaded.folder / "study.db").is_file():
        raise ConfigError(f"Nothing to resume: {loaded.folder} holds no study.db. Start the sweep "
                          "without --resume (or pass the --storage it used).")
    return default_storage_url(loaded.folder)


def _check_same_sweep(loaded: LoadedSweep) -> None:
    """--resume with an edited sweep file would mix two searches in one study: refuse."""
    path = loaded.folder / "sweep.yaml"
    if not path.is_file():
        return
    recorded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    current = loaded.sweep.model_dump(mode="json", exclude_none=True)
    for key in ("method", "metric", "parameters", "experiments", "base"):
        if recorded.get(key) != current.get(key):
            raise ConfigError(f"--resume: the sweep file's `{key}` differs from the one this sweep "
                              f"started with ({path}); resume with the same file, or start a new "
                              "sweep under another name.")


@contextmanager
def _mlflow_parent(loaded: LoadedSweep, say: Say) -> Iterator[None]:
    """With MLflow tracking on (``--mlflow`` or the base's ``tracking.mlflow``), one parent run
    for the sweep; every trial logs as its child. A server that cannot be reached leaves the
    trials to log on their own (each warns once; ``cnnlab sync`` uploads them later)."""
    from cnnlab.track.mlflow_run import default_experiment
    from cnnlab.track.session import resolve_uri

    cfg = loaded.trial_config(0, {}, 0 if loaded.sweep.method == "list" else None)[0]
    uri = resolve_uri(cfg.tracking.mlflow)
    if uri is None:
        yield
        return
    from cnnlab.track import parent_run

    experiment = cfg.tracking.experiment or default_experiment(loaded.sweep.name)
    try:
        context = parent_run(uri, experiment, loaded.sweep.name,
                             tags={"sweep": loaded.sweep.name, "method": loaded.sweep.method})
        loaded.parent_run_id = context.__enter__()
    except Exception as exc:  # server down: the sweep goes on without a parent run
        say(f"warning: MLflow at {mask_url(uri)} is not reachable ({type(exc).__name__}); the "
            "trials are not nested under a sweep run")
        yield
        return
    try:
        yield
    except BaseException as exc:
        context.__exit__(type(exc), exc, exc.__traceback__)
        raise
    context.__exit__(None, None, None)


def _run_workers(loaded: LoadedSweep, url: str, workers: int, threads: int | None,
                 say: Say) -> list[str]:
    """One worker runs here; several are spawned processes sharing the cores (each gets
    cores / workers threads: more would oversubscribe them)."""
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}.")
    cores = os.cpu_count() or 1
    if threads is None and workers > 1:
        threads = max(1, cores // workers)
    if workers == 1:
        run_worker(loaded, url, worker=0, threads=threads, say=say)
        return []
    if workers > cores:
        say(f"note: {workers} workers on {cores} cores: each gets 1 thread and they compete")
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=_worker_main, args=(loaded, url, i, threads),
                             name=f"cnnlab-sweep-worker-{i}") for i in range(workers)]
    for proc in procs:
        proc.start()
        time.sleep(0.5)  # staggered: the first asks of a fresh study do not all collide
    say(f"{workers} workers (pids {', '.join(str(p.pid) for p in procs)}), "
        f"{threads} thread(s) each")
    try:
        for proc in procs:
            proc.join()
    except KeyboardInterrupt:
        for proc in procs:
            proc.join(timeout=60)
        raise
    return [f"worker {i} (pid {p.pid}) ended with exit code {p.exitcode}"
            + (" (killed by a signal)" if (p.exitcode or 0) < 0 else "")
            for i, p in enumerate(procs) if p.exitcode]


def _worker_main(loaded: LoadedSweep, url: str, worker: int, threads: int | None) -> None:
    def say(text: str) -> None:
        print(text, flush=True)

    try:
        run_worker(loaded, url, worker=worker, threads=threads, say=say)
    except KeyboardInterrupt:
        raise SystemExit(130)


def _write_status(folder: Path, loaded: LoadedSweep, url: str, status: str, *,
                  created: bool = False) -> None:
    path = folder / "sweep.json"
    record = read_json(path) if path.is_file() else {}
    now = datetime.now().isoformat(timespec="seconds")
    sweep = loaded.sweep
    record.update({"name": sweep.name, "method": sweep.method, "metric": sweep.metric,
                   "direction": sweep.resolved_direction, "study_name": sweep.name,
                   "storage": mask_url(url), "status": status,
                   "trials_planned": sweep.planned_trials, "updated": now})
    if created or "created" not in record:
        record["created"] = now
    write_json(path, record)


def _best(study: optuna.Study) -> dict[str, Any] | None:
    try:
        best = study.best_trial
    except ValueError:  # no completed trial
        return None
    return {"number": best.number, "value": best.value, "params": best.params,
            "run_dir": best.user_attrs.get("run_dir"), "label": best.user_attrs.get("label")}


def _write_report(folder: Path, url: str, notes: list[str]) -> Path | None:
    from cnnlab.sweep.report import write_sweep_report

    try:
        report = write_sweep_report(folder, storage=url)
        notes.extend(report.notes)
        return report.html
    except Exception as exc:  # the trials are recorded; a report failure must not hide them
        notes.append(f"the report page could not be written: {type(exc).__name__}: {exc}")
        return None


__all__ = ["SweepOutcome", "run_sweep"]

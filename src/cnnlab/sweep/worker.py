"""One sweep worker: claims trials from the study until the sweep is done.

Each trial is an ordinary ``cnnlab run`` (``pipeline.run_experiment``) of the base experiment
with the trial's parameters, named ``<sweep>/trial-NNN``. Several workers (processes on this
machine, or machines sharing a database) run this same loop against one study; Optuna hands
each of them different trials.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.trial import FrozenTrial, Trial, TrialState
from optuna_integration import PyTorchLightningPruningCallback

from cnnlab.config.schema import ExperimentConfig
from cnnlab.store import read_history, read_json, write_json
from cnnlab.sweep.config import Distribution, LoadedSweep
from cnnlab.sweep.study import create_study, open_storage, progress, trial_run_dir
from cnnlab.sweep.tables import write_trial_tables
from cnnlab.train.fit import RunStopper

Say = Callable[[str], None]


class SweepPruning(PyTorchLightningPruningCallback, RunStopper):
    """optuna-integration's Lightning pruning callback, stopping the run instead of raising.

    The library raises ``TrialPruned`` inside ``Trainer.fit``; here the epoch ends normally so
    the run folder records ``pruned`` with its history, and the objective raises afterwards.
    """

    pruned_at_epoch: int | None = None

    def on_validation_end(self, trainer, pl_module) -> None:
        try:
            super().on_validation_end(trainer, pl_module)
        except optuna.TrialPruned:
            self.pruned_at_epoch = pl_module.current_epoch + 1
            self.stopped = ("pruned", f"pruned by the sweep's pruner after epoch "
                                      f"{self.pruned_at_epoch} ({self.monitor})")
            trainer.should_stop = True


# ------------------------------------------------------------------ parameters of a trial

def suggest(trial: Trial, name: str, dist: Distribution) -> Any:
    """Draw (or, for a queued trial, read back) one parameter's value."""
    kind = dist.kind
    if kind in ("uniform", "log_uniform"):
        low, high = getattr(dist, kind)
        return trial.suggest_float(name, low, high, log=kind == "log_uniform")
    if kind in ("int", "log_int"):
        low, high = getattr(dist, kind)
        return trial.suggest_int(name, low, high, log=kind == "log_int")
    encoded = trial.suggest_categorical(name, encode_points(dist.points))
    return decode_point(dist.points, encoded)


def encode_points(points: list[Any]) -> list[Any]:
    """Optuna stores only None/bool/int/float/str choices: other values travel as JSON text."""
    if all(p is None or isinstance(p, (bool, int, float, str)) for p in points):
        return list(points)
    return [json.dumps(p) for p in points]


def decode_point(points: list[Any], encoded: Any) -> Any:
    plain = encode_points(points)
    return points[plain.index(encoded)] if encoded in plain else encoded


def queue_points(loaded: LoadedSweep) -> list[dict[str, Any]]:
    """list: one ``step`` per experiment; grid: every combination, in file order."""
    from cnnlab.sweep.config import grid_points

    sweep = loaded.sweep
    if sweep.method == "list":
        return [{"step": i} for i in range(len(sweep.experiments))]
    if sweep.method == "grid":
        return [{name: encode_points(sweep.parameters[name].points)[
                     sweep.parameters[name].points.index(value)]
                 for name, value in point.items()} for point in grid_points(sweep)]
    return []


# ---------------------------------------------------------------------------- the objective

def metric_value(metrics: dict[str, Any], history: list[dict], metric: str) -> float | None:
    """The number a trial is scored by: the evaluated split for val_/test_ names, the best
    epoch's row for train-set history keys, else a dotted path into metrics.json."""
    aliases = {"val_accuracy": "val.accuracy", "val_loss": "val.log_loss",
               "test_accuracy": "test.accuracy", "test_loss": "test.log_loss"}
    if metric in ("accuracy", "loss"):
        epoch = metrics.get("best_epoch") or (history[-1]["epoch"] if history else None)
        row = next((r for r in history if r.get("epoch") == epoch), None)
        return float(row[metric]) if row and metric in row else None
    node: Any = metrics
    for part in aliases.get(metric, metric).split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return float(node) if isinstance(node, (int, float)) else None


class Objective:
    """Runs trial after trial in this process; picklable so local workers can be spawned."""

    def __init__(self, loaded: LoadedSweep, *, worker: int, threads: int | None,
                 say: Say) -> None:
        self.loaded = loaded
        self.worker = worker
        self.threads = threads
        self.say = say

    def __call__(self, trial: Trial) -> float:
        try:
            return self._run(trial)
        except (optuna.TrialPruned, KeyboardInterrupt):
            raise
        except BaseException as exc:
            # Recorded as a final status, so the trial counts as done and is not rerun forever.
            trial.set_user_attr("status", "failed")
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:500])
            self.say(f"trial {trial.number} failed: {type(exc).__name__}: {exc}")
            raise

    def _run(self, trial: Trial) -> float:
        sweep = self.loaded.sweep
        if sweep.method in ("list", "grid") and "point" not in trial.user_attrs:
            # Another worker took the last queued point between our check and our ask.
            trial.set_user_attr("status", "skipped")
            raise optuna.TrialPruned("no queued point left")
        if sweep.method == "list":
            index = trial.suggest_categorical("step", list(range(len(sweep.experiments))))
            params: dict[str, Any] = {}
        else:
            index = None
            params = {name: suggest(trial, name, dist) for name, dist in sweep.parameters.items()}
        cfg, label = self.loaded.trial_config(trial.number, params, index)
        cfg = self._local(cfg)
        trial.set_user_attr("label", label)
        trial.set_user_attr("worker", self.worker)
        trial.set_user_attr("pid", os.getpid())
        self.say(f"trial {trial.number} (worker {self.worker}): {label or 'base'}")
        pruning = ([SweepPruning(trial, sweep.pruning_monitor)]
                   if sweep.pruner.name != "none" else [])
        tags = {"sweep": {"name": sweep.name, "trial": trial.number, "params": params,
                          "label": label}}
        from cnnlab.pipeline import resume_experiment, run_experiment

        earlier = interrupted_run(self.loaded, trial.study.get_trials(deepcopy=False),
                                  trial.number)
        if earlier is not None:
            # A retried trial (Ctrl+C then --resume, or a killed worker) goes on from its first
            # attempt's last checkpoint instead of repeating the epochs already trained.
            trial.set_user_attr("run_dir", os.path.relpath(earlier, self.loaded.folder))
            self.say(f"trial {trial.number} continues {earlier} from its last checkpoint")
            outcome = resume_experiment(earlier, say=lambda text: None, callbacks=pruning,
                                        tags=tags)
        else:
            outcome = run_experiment(cfg, say=lambda text: None, callbacks=pruning, tags=tags)
        metrics = outcome.metrics
        status = metrics["status"]
        trial.set_user_attr("run_dir", os.path.relpath(outcome.run_dir, self.loaded.folder))
        trial.set_user_attr("status", status)
        trial.set_user_attr("epochs_run", metrics.get("epochs_run"))
        trial.set_user_attr("train_seconds", metrics.get("train_seconds"))
        if status == "interrupted":
            raise KeyboardInterrupt
        if status == "pruned":
            epoch = pruning[0].pruned_at_epoch
            _add_to_metrics(outcome.run_dir, {"pruned_at_epoch": epoch})
            trial.set_user_attr("pruned_at_epoch", epoch)
            raise optuna.TrialPruned(f"pruned after epoch {epoch}")
        if status != "completed":
            return math.nan  # diverged: Optuna records FAIL, the cnnlab status says why
        history = read_history(outcome.run_dir)
        value = metric_value(metrics, history, sweep.metric)
        if value is None:
            trial.set_user_attr("status", "failed")
            trial.set_user_attr("error", f"metric {sweep.metric!r} is not in the run's results")
            return math.nan
        return value

    def _local(self, cfg: ExperimentConfig) -> ExperimentConfig:
        """Workers share the cores (threads each) and print no progress bars."""
        update: dict[str, Any] = {"progress_bar": False}
        if self.threads is not None:
            update["threads"] = self.threads
        return cfg.model_copy(update={"train": cfg.train.model_copy(update=update)})


def interrupted_run(loaded: LoadedSweep, trials: list[FrozenTrial], number: int) -> Path | None:
    """The run folder that trial ``number`` can continue, when it retries a trial that was
    stopped mid-run: the folder must hold a last checkpoint and must not have finished.

    Retries can chain (a continued trial stopped again): each step back follows ``retry_of``
    (a --resume requeue) or Optuna's ``failed_trial`` (a stale worker's retry); the first
    attempt that recorded or left a folder is the one to continue.
    """
    by_number = {t.number: t for t in trials}
    current, seen = by_number.get(number), set()
    while current is not None:
        origin = current.user_attrs.get("retry_of", current.system_attrs.get("failed_trial"))
        if origin is None or origin in seen:
            return None
        seen.add(origin)
        current = by_number.get(origin)
        folder = (trial_run_dir(loaded.folder, current.number, current.user_attrs.get("run_dir"))
                  if current is not None else None)
        if folder is not None:
            return folder if _can_continue(folder) else None
    return None


def _can_continue(folder: Path) -> bool:
    metrics = folder / "metrics.json"
    status = read_json(metrics).get("status") if metrics.is_file() else None
    return status in ("running", "interrupted") and (folder / "checkpoints" / "last.ckpt").is_file()


def _add_to_metrics(run_dir: Path, values: dict[str, Any]) -> None:
    path = Path(run_dir) / "metrics.json"
    record = read_json(path) if path.is_file() else {}
    record.update(values)
    write_json(path, record)


# ------------------------------------------------------------------------------ the loop

def run_worker(loaded: LoadedSweep, storage_url: str, *, worker: int = 0,
               threads: int | None = None, say: Say = print) -> None:
    """Claim and run trials until the planned number are done (list/grid: the queue is
    empty), then wait for trials still running elsewhere so a killed one can be rerun."""
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    sweep = loaded.sweep
    storage = open_storage(storage_url, sweep)
    epochs = loaded.trial_config(0, {}, 0 if sweep.method == "list" else None)[0].train.epochs
    study = create_study(storage, sweep.name, sweep, epochs, worker=worker, load=True)
    objective = Objective(loaded, worker=worker, threads=threads, say=say)

    def more_to_do() -> bool:
        optuna.storages.fail_stale_trials(study)  # a killed worker's trial -> FAIL, queued again
        counts = progress(study)
        if counts["waiting"]:
            return True
        return sweep.method not in ("list", "grid") and (
            counts["done"] + counts["running"] < sweep.planned_trials)

    def after_trial(study: optuna.Study, trial) -> None:
        write_trial_tables(loaded.folder, study)
        if not more_to_do():
            study.stop()

    while True:
        if more_to_do():
            study.optimize(objective, callbacks=[after_trial], catch=(Exception,),
                           gc_after_trial=False)
            continue
        if not progress(study)["running"]:
            break
        time.sleep(sweep.heartbeat_seconds)  # another worker's trial: done, or stale soon
    write_trial_tables(loaded.folder, study)


__all__ = ["Objective", "SweepPruning", "interrupted_run", "metric_value", "queue_points",
           "run_worker", "suggest"]

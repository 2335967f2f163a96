"""The Optuna side of a sweep: storage, samplers and pruners by name, and trial bookkeeping.

A sweep is one Optuna study. Its storage is a SQLite file in the sweep folder unless
``--storage`` names a database server (``postgresql://...``) that workers on other machines
can reach. Storages run with Optuna's heartbeat: a running trial records that it is alive
every ``heartbeat_seconds``; one that stays silent (its worker was killed) is failed by the
next worker that looks, and Optuna's retry callback queues it again with the same parameters.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from cnnlab.errors import ConfigError
from cnnlab.registry import Registry
from cnnlab.store.catalog import run_folders
from cnnlab.sweep.config import SweepConfig, trial_name

# Optuna marks heartbeat, retry and the matplotlib plots experimental; they are what we want.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
# Our own lines say what each trial did; Optuna would repeat failures with tracebacks.
optuna.logging.set_verbosity(optuna.logging.ERROR)

SAMPLERS: Registry[Callable[[SweepConfig, int], optuna.samplers.BaseSampler]] = Registry("method")
PRUNERS: Registry[Callable[[SweepConfig, int], optuna.pruners.BasePruner]] = Registry("pruner")

# cnnlab statuses of trials that ended for good (not a killed worker's): they count as done.
FINAL_STATUSES = ("completed", "diverged", "failed", "pruned")


@SAMPLERS.register("optuna", "Optuna's TPE: random start-up trials, then a model of the results")
def _tpe(sweep: SweepConfig, worker: int) -> optuna.samplers.BaseSampler:
    """``worker`` offsets the seed: each worker (and each resume) draws its own values."""
    return optuna.samplers.TPESampler(seed=sweep.seed + worker,
                                      n_startup_trials=sweep.startup_trials)


@SAMPLERS.register("random", "independent uniform draws from each distribution")
def _random(sweep: SweepConfig, worker: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=sweep.seed + worker)


# list and grid points are queued in order when the study is created (``enqueue_points``);
# the sampler only sees queued trials, whose parameters are fixed.
SAMPLERS.add("grid", _random, "every combination of the parameters' values, queued in order")
SAMPLERS.add("list", _random, "the listed experiments, in order")


@PRUNERS.register("none", "every trial runs to the end")
def _no_pruner(sweep: SweepConfig, epochs: int) -> optuna.pruners.BasePruner:
    return optuna.pruners.NopPruner()


@PRUNERS.register("median", "stop a trial whose epoch metric is worse than the median of "
                  "earlier trials at that epoch")
def _median(sweep: SweepConfig, epochs: int) -> optuna.pruners.BasePruner:
    return optuna.pruners.MedianPruner(n_startup_trials=sweep.pruner.startup_trials,
                                       n_warmup_steps=sweep.pruner.warmup_epochs)


@PRUNERS.register("hyperband", "Hyperband's successive halving over epochs")
def _hyperband(sweep: SweepConfig, epochs: int) -> optuna.pruners.BasePruner:
    return optuna.pruners.HyperbandPruner(min_resource=sweep.pruner.min_epochs,
                                          max_resource=max(epochs, sweep.pruner.min_epochs))


# ---------------------------------------------------------------------------- storage

def default_storage_url(folder: Path) -> str:
    return f"sqlite:///{Path(folder).resolve() / 'study.db'}"


def mask_url(url: str) -> str:
    """The URL with any password replaced by ***, for messages and sweep.json."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a database URL at all: nothing to mask reliably
        return url.split("@")[-1] if "@" in url else url


def open_storage(url: str, sweep: SweepConfig) -> optuna.storages.RDBStorage:
    """Connect (exit 2 naming the masked URL when the database cannot be reached)."""
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # Several local workers share the file: wait for a lock instead of failing at once.
        kwargs["connect_args"] = {"timeout": 60}
    else:
        kwargs["pool_pre_ping"] = True
        kwargs["connect_args"] = {"connect_timeout": 10} if url.startswith("postgres") else {}
    try:
        return _connect(url, kwargs, sweep)
    except Exception as exc:  # sqlalchemy's OperationalError, ArgumentError, missing driver
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"Cannot open the sweep storage {mask_url(url)}: {reason}. Check the "
                          "URL, that the server is running and reachable, and (PostgreSQL) that "
                          "psycopg is installed: pip install 'cnnlab[postgres]'.") from None


def _connect(url: str, engine_kwargs: dict[str, Any], sweep: SweepConfig,
             attempts: int = 10) -> optuna.storages.RDBStorage:
    from sqlalchemy.exc import IntegrityError

    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(
                url, engine_kwargs=engine_kwargs, heartbeat_interval=sweep.heartbeat_seconds,
                grace_period=4 * sweep.heartbeat_seconds,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                    max_retry=3))
        except IntegrityError:
            # Another process (a worker, a second machine, a client reading the study) created
            # the schema of a new database at the same moment, and its version row won: the
            # schema is there now, so connecting again finds it.
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def create_study(storage: optuna.storages.BaseStorage, study_name: str, sweep: SweepConfig,
                 epochs: int, *, worker: int = 0, load: bool) -> optuna.Study:
    pruner = PRUNERS.get(sweep.pruner.name)(sweep, epochs)
    if load:
        try:
            # A sampler seeded as at the start would draw the first trials' values again after
            # a resume: the seed moves on with the trials the study already has.
            existing = len(storage.get_all_trials(storage.get_study_id_from_name(study_name),
                                                  deepcopy=False))
            sampler = SAMPLERS.get(sweep.method)(sweep, worker + 1009 * existing)
            return optuna.load_study(study_name=study_name, storage=storage, sampler=sampler,
                                     pruner=pruner)
        except KeyError:
            raise ConfigError(f"The storage has no sweep named {study_name!r}: start it without "
                              "--resume first.") from None
    sampler = SAMPLERS.get(sweep.method)(sweep, worker)
    try:
        return optuna.create_study(study_name=study_name, storage=storage, sampler=sampler,
                                   pruner=pruner, direction=sweep.resolved_direction)
    except optuna.exceptions.DuplicatedStudyError:
        raise ConfigError(f"The storage already holds a sweep named {study_name!r}: continue it "
                          "with --resume, or give the sweep another name.") from None


def enqueue_points(study: optuna.Study, points: list[dict[str, Any]]) -> None:
    """Queue list/grid points in order; each queued trial remembers its index."""
    for index, params in enumerate(points):
        study.enqueue_trial(params, user_attrs={"point": index})


# ------------------------------------------------------------------------ bookkeeping

def is_done(trial: FrozenTrial) -> bool:
    """A trial that ended for good: completed, pruned, or failed for a reason of its own
    (diverged, an error). A trial failed because its worker died is not done: it is rerun."""
    if trial.user_attrs.get("status") == "skipped":
        return False  # a surplus ask after the queue ran dry: no trial at all
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and trial.user_attrs.get("status") in FINAL_STATUSES


def progress(study: optuna.Study) -> dict[str, int]:
    """Counts the workers use to decide whether to start another trial."""
    trials = study.get_trials(deepcopy=False)
    return {"done": sum(is_done(t) for t in trials),
            "running": sum(t.state == TrialState.RUNNING for t in trials),
            "waiting": sum(t.state == TrialState.WAITING for t in trials)}


def requeue_interrupted(study: optuna.Study) -> list[int]:
    """``--resume``: queue again, with the same parameters, every trial that failed because
    the sweep was stopped (Ctrl+C) and that no later trial retried already."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    retried |= {t.system_attrs.get("failed_trial") for t in trials}
    requeued: list[int] = []
    for trial in trials:
        if trial.state == TrialState.FAIL and not is_done(trial) and trial.number not in retried:
            attrs = {k: v for k, v in trial.user_attrs.items() if k == "point"}
            study.enqueue_trial(trial.params, user_attrs={**attrs, "retry_of": trial.number})
            requeued.append(trial.number)
    return requeued


def trial_run_dir(folder: Path, number: int, recorded: Any) -> Path | None:
    """Trial ``number``'s run folder: the one it recorded, else (a worker killed before it could
    record one) the latest under its name in the sweep ``folder``."""
    if recorded:
        path = folder / str(recorded)
        if (path / "metrics.json").is_file():
            return path.resolve()
    trial_folder = folder / trial_name(number)
    found = run_folders(trial_folder) if trial_folder.is_dir() else []
    return found[-1].resolve() if found else None  # run ids start with the time: last is latest


__all__ = ["PRUNERS", "SAMPLERS", "create_study", "default_storage_url", "enqueue_points",
           "is_done", "mask_url", "open_storage", "progress", "requeue_interrupted",
           "trial_run_dir"]

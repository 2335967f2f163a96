#!/usr/bin/env python3
"""Sweep benchmarks: Optuna TPE with median pruning against random search, and 2 workers
against 1. Prints one JSON line per measurement and appends it to docs/sweeps.md.

    # report 002's step-7 net on a CIFAR-10 subset, 16 trials each, same per-trial budget
    .venv/bin/python bench/sweep.py methods --trials 16 --per-class 500 --epochs 4
    # trials/hour of a small digits sweep with --workers 1 and 2 (threads per worker varied)
    .venv/bin/python bench/sweep.py workers --trials 8 --epochs 4

Run each alone on an otherwise idle machine: the figures are wall-clock times.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml
from _record import record

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "datasets" / "cifar10" / "train"
DOC = REPO / "docs" / "sweeps.md"
STEP7 = REPO / "recipes" / "report002" / "07_dropout_ramp.yaml"
SEARCH = REPO / "recipes" / "report002" / "search.sweep.yaml"


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _run(sweep: dict, folder: Path, overrides: list[str], **kwargs) -> dict:
    from cnnlab.sweep import load_sweep, run_sweep

    path = folder / f"{sweep['name'].replace('/', '_')}.sweep.yaml"
    path.write_text(yaml.safe_dump(sweep, sort_keys=False))
    loaded = load_sweep(path, experiment_overrides=overrides)
    started = time.perf_counter()
    outcome = run_sweep(loaded, say=lambda text: None, **kwargs)
    wall = time.perf_counter() - started
    states = [row["state"] for row in outcome.rows]
    return {"status": outcome.status, "wall_seconds": round(wall, 1),
            "best_val_accuracy": round(outcome.best["value"], 4) if outcome.best else None,
            "best_params": outcome.best["params"] if outcome.best else None,
            "trials": len(states), "pruned": states.count("PRUNED"),
            "pruned_share": round(states.count("PRUNED") / max(len(states), 1), 3),
            "epochs_trained": sum(int(r.get("epochs_run") or 0) for r in outcome.rows),
            "folder": str(outcome.folder)}


def methods(args) -> None:
    """Optuna (TPE + median pruning) vs random (no pruning) on report 002's step-7 net."""
    from cnnlab.store.run import cpu_description

    search = yaml.safe_load(SEARCH.read_text())
    overrides = ["data.name=imagefolder", f"data.root={args.data.resolve()}",
                 f"data.max_per_class={args.per_class}", "data.val_split=0.2",
                 "data.test_split=0.0", "data.split_seed=0", f"train.epochs={args.epochs}",
                 "train.progress_bar=false"]
    # Keras's BatchNorm momentum 0.99 needs thousands of steps before its running statistics
    # leave their initial values; at this budget (a hundred-odd steps per trial) every trial
    # would score near chance on held-out images. 0.9 settles within the first epoch.
    overrides += [f"model.layers.{i}.batchnorm.momentum=0.9" for i in (1, 3, 7, 9, 13, 15)]
    runs = Path(tempfile.mkdtemp(prefix="cnnlab-bench-sweep-"))
    common = {"base": str(STEP7), "metric": "val_accuracy", "trials": args.trials,
              "parameters": search["parameters"], "seed": args.seed, "runs_dir": str(runs)}
    tpe = _run({"name": "bench/optuna", "method": "optuna", "startup_trials": 5,
                "pruner": {"name": "median", "startup_trials": 4, "warmup_epochs": 1},
                **common}, runs, overrides)
    rnd = _run({"name": "bench/random", "method": "random", **common}, runs, overrides)
    record("sweep methods, report 002 step-7 net", {
        "measured_at": _now(), "cpu": cpu_description(), "trials": args.trials,
        "data": f"../shared/datasets/cifar10/train, {args.per_class} images per class, "
                "80/20 stratified split (split seed 0)",
        "epochs_per_trial": args.epochs, "batchnorm_momentum": 0.9,
        "optuna_tpe_median_pruning": tpe, "random": rnd}, DOC)


def workers(args) -> None:
    """Trials per hour of one small digits sweep with 1 worker and with 2."""
    from cnnlab.store.run import cpu_description

    runs = Path(tempfile.mkdtemp(prefix="cnnlab-bench-workers-"))
    base = {"name": "bench/base", "data": {"name": "digits", "val_split": 0.2, "test_split": 0.2,
                                          "cache": False},
            "model": {"layers": [{"conv_block": {"filters": [32, 64], "convs": 2,
                                                 "batchnorm": "after_activation"}},
                                 {"flatten": {}}, {"dense": {"units": 128, "activation": "relu"}}]},
            "train": {"epochs": args.epochs, "batch_size": 64, "progress_bar": False}}
    (runs / "base.yaml").write_text(yaml.safe_dump(base))
    results = {}
    settings = [("1 worker, 2 threads", 1, None), ("2 workers, 1 thread each", 2, None),
                ("2 workers, 2 threads each (oversubscribed)", 2, 2)]
    for label, count, threads in settings:
        name = f"bench/w{count}t{threads or 'auto'}"
        sweep = {"name": name, "base": str(runs / "base.yaml"), "method": "random",
                 "trials": args.trials, "seed": args.seed, "runs_dir": str(runs),
                 "parameters": {"train.lr": {"log_uniform": [3e-4, 3e-3]}}}
        result = _run(sweep, runs, [], workers=count, threads=threads)
        result["trials_per_hour"] = round(3600 * result["trials"] / result["wall_seconds"], 1)
        results[label] = result
    record("sweep workers, digits conv net", {
        "measured_at": _now(), "cpu": cpu_description(), "trials": args.trials,
        "epochs_per_trial": args.epochs, "results": results}, DOC)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", choices=("methods", "workers"))
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--per-class", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    if args.which == "methods":
        if not args.data.is_dir():
            print(f"{args.data} is absent", file=sys.stderr)
            return 2
        methods(args)
    else:
        workers(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

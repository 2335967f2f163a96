"""One experiment end to end: config -> data -> model -> train -> evaluate -> store -> report.

``run_experiment`` is the table of contents of a run; each line is one stage's typed
function. Files land in the run folder as soon as they exist (config first, history after
every epoch), and ``metrics.json`` always says whether the run is running, completed,
diverged, failed or interrupted.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from cnnlab.config import ExperimentConfig, validate_config
from cnnlab.config.load import read_yaml
from cnnlab.data import DataBundle, build_data
from cnnlab.errors import RunError
from cnnlab.evaluate import EvalResult, evaluate
from cnnlab.models import build_model, summarize
from cnnlab.report.plots import plot_confusion_matrix, plot_curves
from cnnlab.report.tables import per_class_csv_rows
from cnnlab.store import (environment, new_run_dir, open_run, read_json, save_weights, write_csv,
                          write_json, write_text, write_yaml)
from cnnlab.train import Classifier, TrainResult, load_weights, train

HISTORY_FIELDS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds")
PER_CLASS_FIELDS = ("split", "class", "support", "precision", "recall", "specificity", "f1")


@dataclass
class RunOutcome:
    run_dir: Path
    metrics: dict
    summary_text: str


Say = Callable[[str], None]


def run_experiment(cfg: ExperimentConfig, *, say: Say = print) -> RunOutcome:
    run_dir = new_run_dir(cfg.runs_dir, cfg.name)
    write_yaml(run_dir / "config.yaml", cfg.model_dump(mode="json"))
    return _run_in(run_dir, cfg, say=say, resume=False)


def resume_experiment(run_dir: Path, *, say: Say = print) -> RunOutcome:
    """Continue an interrupted (or failed) run from its last checkpoint, in the same folder."""
    run_dir = open_run(run_dir)
    status = read_json(run_dir / "metrics.json").get("status") if (run_dir / "metrics.json").is_file() else None
    if status == "completed":
        raise RunError(f"{run_dir} already completed; start a new run with `cnnlab run`.")
    if not (run_dir / "checkpoints" / "last.ckpt").is_file():
        raise RunError(f"{run_dir} has no checkpoints/last.ckpt (it stopped before its first "
                       "epoch ended): start it again with `cnnlab run`.")
    cfg = validate_config(read_yaml(run_dir / "config.yaml"), source=str(run_dir / "config.yaml"))
    return _run_in(run_dir, cfg, say=say, resume=True)


def _run_in(run_dir: Path, cfg: ExperimentConfig, *, say: Say, resume: bool) -> RunOutcome:
    env = environment()
    record = {"status": "running", "name": cfg.name, "run_dir": str(run_dir), **env}
    write_json(run_dir / "metrics.json", record)
    try:
        data = build_data(cfg.data)
        say(f"data: {cfg.data.name}, {data.num_classes} classes, input {data.in_shape}, "
            + ", ".join(f"{k} {len(v)}" for k, v in data.splits().items()))
        write_json(run_dir / "data.json", data.describe())

        net = build_model(cfg.model, data.in_shape, data.num_classes)
        summary = summarize(net, data.in_shape)
        write_text(run_dir / "summary.txt", summary.text)
        say(summary.text)
        classifier = Classifier(net, data.mean, data.std)

        history = _read_history(run_dir) if resume else []
        result = train(classifier, data, cfg.train, cfg.augment,
                       checkpoint_dir=run_dir / "checkpoints",
                       on_epoch=lambda row: write_csv(run_dir / "history.csv", history, HISTORY_FIELDS),
                       history=history,
                       resume_from=run_dir / "checkpoints" / "last.ckpt" if resume else None)
        record.update(_train_record(result, summary))
        if result.status == "interrupted":
            record["status"] = "interrupted"
            record["resume"] = f"cnnlab resume {run_dir}"
            write_json(run_dir / "metrics.json", record)
            return RunOutcome(run_dir, record, summary.text)

        if result.best_checkpoint is not None and _restore_best(cfg):
            load_weights(classifier, result.best_checkpoint)
            record["weights"] = f"best epoch ({cfg.train.checkpoint.monitor})"
        else:
            record["weights"] = "last epoch"
        classifier.cpu()
        save_weights(classifier, run_dir / "model.safetensors", {"name": cfg.name})

        results = _evaluate_splits(classifier, data, cfg)
        record.update({split: r.metrics for split, r in results.items()})
        primary = results.get("test") or results.get("val")
        record["predict_images_per_s"] = primary.images_per_s if primary else None
        _write_result_files(run_dir, cfg, data, results, result.history)
        record["status"] = result.status
        write_json(run_dir / "metrics.json", record)
        return RunOutcome(run_dir, record, summary.text)
    except KeyboardInterrupt:
        record["status"] = "interrupted"
        write_json(run_dir / "metrics.json", record)
        raise
    except BaseException as exc:
        record["status"] = "failed"
        record["error"] = f"{type(exc).__name__}: {exc}"
        write_json(run_dir / "metrics.json", record)
        raise


def _restore_best(cfg: ExperimentConfig) -> bool:
    es = cfg.train.early_stopping
    return cfg.train.checkpoint is not None and (es is None or es.restore_best_weights)


def _train_record(result: TrainResult, summary) -> dict:
    return {"best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
            "train_seconds": round(result.train_seconds, 3), "stop_reason": result.stop_reason,
            "params": {"total": summary.total, "trainable": summary.trainable,
                       "non_trainable": summary.non_trainable}}


def _evaluate_splits(classifier: Classifier, data: DataBundle, cfg: ExperimentConfig
                     ) -> dict[str, EvalResult]:
    splits = data.splits()
    return {name: evaluate(classifier, splits[name], data.classes,
                           batch_size=cfg.eval.batch_size, channels_last=cfg.train.channels_last)
            for name in cfg.eval.splits if name in splits}


def _write_result_files(run_dir: Path, cfg: ExperimentConfig, data: DataBundle,
                        results: dict[str, EvalResult], history: list[dict]) -> None:
    rows = [{"split": split, **row} for split, r in results.items()
            for row in per_class_csv_rows(r.metrics)]
    write_csv(run_dir / "per_class.csv", rows, PER_CLASS_FIELDS)
    primary_split = "test" if "test" in results else next(iter(results), None)
    if primary_split is not None:
        cm = results[primary_split].metrics["confusion_matrix"]
        write_csv(run_dir / "confusion_matrix.csv",
                  [{"true": name, **dict(zip(data.classes, counts))}
                   for name, counts in zip(data.classes, cm)], ["true", *data.classes])
        plot_confusion_matrix(cm, data.classes, run_dir / "confusion_matrix.png",
                              title=f"{cfg.name} ({primary_split})")
    plot_curves(history, run_dir / "curves.png", title=cfg.name)


def _read_history(run_dir: Path) -> list[dict]:
    path = run_dir / "history.csv"
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def _number(text: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return math.nan
    return int(value) if value.is_integer() and abs(value) < 1e15 else value


__all__ = ["RunOutcome", "resume_experiment", "run_experiment"]

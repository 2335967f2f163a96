"""One experiment end to end: config -> data -> model -> train -> evaluate -> store -> report.

``run_experiment`` is the table of contents of a run; each line is one stage's typed
function. Files land in the run folder as soon as they exist (config first, history after
every epoch), and ``metrics.json`` always says whether the run is running, completed,
diverged, failed or interrupted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from cnnlab.config import ExperimentConfig, validate_config
from cnnlab.config.load import read_yaml
from cnnlab.data import DataBundle, build_data
from cnnlab.data.sources import check_source_keys
from cnnlab.errors import RunError
from cnnlab.evaluate import EvalResult, evaluate
from cnnlab.models import build_model, summarize
from cnnlab.models.backbones import preflight as preflight_weights
from cnnlab.report.plots import plot_confusion_matrix, plot_curves
from cnnlab.report.tables import per_class_csv_rows
from cnnlab.report.wide import wide_csv_rows, wide_fields, wide_markdown
from cnnlab.store import (environment, new_run_dir, open_run, read_history, read_json,
                          safe_output_path, save_weights, write_csv,
                          write_json, write_text, write_yaml)
from cnnlab.store.run import check_checkpoint, read_run_json
from cnnlab.submission import PredictOutcome, predict_to_csv
from cnnlab.track import open_tracking
from cnnlab.train import Classifier, TrainResult, load_weights, train
from cnnlab.train.cpu import configure_cpu
from cnnlab.train.distributed import is_worker, layout, shared_run_dir
from cnnlab.train.fit import seed_rngs

HISTORY_FIELDS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds",
                  "val_seconds")
PER_CLASS_FIELDS = ("split", "class", "support", "precision", "recall", "specificity", "f1")


@dataclass
class RunOutcome:
    run_dir: Path
    metrics: dict
    summary_text: str


Say = Callable[[str], None]


def run_experiment(cfg: ExperimentConfig, *, say: Say = print, callbacks: Sequence = (),
                   tags: dict | None = None) -> RunOutcome:
    """Train, evaluate and record ``cfg`` in a new run folder.

    ``callbacks`` are extra Lightning callbacks (a sweep's pruner); ``tags`` are recorded in
    metrics.json from the start (a sweep's trial number and parameters).
    """
    check_source_keys(cfg.data)  # config mistakes fail before a run folder exists
    # Multi-process training: rank 0 makes the folder, the other ranks only train (see
    # train/distributed.py).
    run_dir = shared_run_dir(lambda: _new_run(cfg))
    if is_worker():
        return _work_in(run_dir, cfg, resume=False)
    return _run_in(run_dir, cfg, say=say, resume=False, callbacks=callbacks, tags=tags)


def _new_run(cfg: ExperimentConfig) -> Path:
    run_dir = new_run_dir(cfg.runs_dir, cfg.name)
    write_yaml(run_dir / "config.yaml", cfg.model_dump(mode="json"))
    return run_dir


def resume_experiment(run_dir: Path, *, say: Say = print, callbacks: Sequence = (),
                      tags: dict | None = None) -> RunOutcome:
    """Continue an interrupted (or failed) run from its last checkpoint, in the same folder;
    ``callbacks`` and ``tags`` as for :func:`run_experiment`."""
    run_dir = open_run(run_dir)
    if is_worker():
        cfg = validate_config(read_yaml(run_dir / "config.yaml"), source=str(run_dir / "config.yaml"))
        return _work_in(run_dir, cfg, resume=True)
    metrics = read_run_json(run_dir / "metrics.json") if (run_dir / "metrics.json").is_file() else {}
    status = metrics.get("status") if isinstance(metrics, dict) else None
    if status == "completed":
        raise RunError(f"{run_dir} already completed; start a new run with `cnnlab run`.")
    if not (run_dir / "checkpoints" / "last.ckpt").is_file():
        raise RunError(f"{run_dir} has no checkpoints/last.ckpt (it stopped before its first "
                       "epoch ended): start it again with `cnnlab run`.")
    check_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    cfg = validate_config(read_yaml(run_dir / "config.yaml"), source=str(run_dir / "config.yaml"))
    return _run_in(run_dir, cfg, say=say, resume=True, callbacks=callbacks, tags=tags)


def _run_in(run_dir: Path, cfg: ExperimentConfig, *, say: Say, resume: bool,
            callbacks: Sequence = (), tags: dict | None = None) -> RunOutcome:
    env = environment()
    record = {"status": "running", "name": cfg.name, "run_dir": str(run_dir),
              "world_size": layout(cfg.train).world_size, **env, **(tags or {})}
    write_json(run_dir / "metrics.json", record)
    tracking = None
    try:
        tracking = open_tracking(cfg, run_dir, say=say)
        tracking.start(cfg.model_dump(mode="json"), record)
        preflight_weights(cfg.model)  # transfer learning: missing pretrained weights fail first
        if cfg.predict is not None:  # a missing test folder fails before training, not after
            from cnnlab.evaluate.inputs import resolve_inputs

            resolve_inputs(cfg.predict.source, id_column=cfg.predict.input_id_column,
                           path_column=cfg.predict.input_path_column)
        data = build_data(cfg.data)
        say(f"data: {cfg.data.name}, {data.num_classes} classes, input {data.in_shape}, "
            + ", ".join(f"{k} {len(v)}" for k, v in data.splits().items()))
        if "skipped_images" in data.info:
            record["skipped_images"] = data.info["skipped_images"]["count"]
            _say_skipped(data.info["skipped_images"], say)
        write_json(run_dir / "data.json", data.describe())

        # As Keras's set_random_seed: the same train.seed starts from the same weights.
        seed_rngs(cfg.train.seed)
        net = build_model(cfg.model, data.in_shape, data.num_classes)
        if hasattr(net, "init_from_data") and not resume:
            # Data-dependent initialisation (e.g. fastnet's patch-whitening stem).
            net.init_from_data(data.train.images, data.mean, data.std)
        summary = summarize(net, data.in_shape)
        summary_text = summary.text + _backbone_stages(net, data.in_shape)
        write_text(run_dir / "summary.txt", summary_text)
        say(summary_text)
        mean, std = _input_scaling(net, data, record)
        classifier = Classifier(net, mean, std)

        history = read_history(run_dir) if resume else []
        result = train(classifier, data, cfg.train, cfg.augment,
                       checkpoint_dir=run_dir / "checkpoints",
                       on_epoch=lambda row: (
                           write_csv(run_dir / "history.csv", history, HISTORY_FIELDS),
                           tracking.on_epoch(row)),
                       history=history, loggers=tracking.loggers,
                       resume_from=run_dir / "checkpoints" / "last.ckpt" if resume else None,
                       callbacks=callbacks)
        record.update(_train_record(result, summary))
        _record_transfer(net, run_dir, record)
        if result.status == "interrupted":
            record["status"] = "interrupted"
            record["resume"] = f"cnnlab resume {run_dir}"
            write_json(run_dir / "metrics.json", record)
            return RunOutcome(run_dir, record, summary_text)
        if result.status not in ("completed", "diverged"):
            # Stopped early by a callback (a sweep's pruner): recorded, not evaluated.
            record["status"] = result.status
            write_json(run_dir / "metrics.json", record)
            write_csv(run_dir / "history.csv", result.history, HISTORY_FIELDS)
            return RunOutcome(run_dir, record, summary_text)

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
        if cfg.predict is not None:
            record["submission"] = _predict_stage(classifier, data, cfg, run_dir, say)
        record["status"] = result.status
        write_json(run_dir / "metrics.json", record)
        return RunOutcome(run_dir, record, summary_text)
    except KeyboardInterrupt:
        record["status"] = "interrupted"
        write_json(run_dir / "metrics.json", record)
        raise
    except BaseException as exc:
        record["status"] = "failed"
        record["error"] = f"{type(exc).__name__}: {exc}"
        try:
            write_json(run_dir / "metrics.json", record)
        except RunError:
            pass  # the disk that failed the run may refuse this too; the first error matters
        raise
    finally:
        if tracking is not None:
            tracking.finish(record)


def _work_in(run_dir: Path, cfg: ExperimentConfig, *, resume: bool) -> RunOutcome:
    """A rank > 0 of a multi-process run: the same data and model, ``trainer.fit``, no files."""
    data = build_data(cfg.data)
    net = build_model(cfg.model, data.in_shape, data.num_classes)
    # DDP copies rank 0's weights to every rank; data-dependent init needs no repeat here.
    classifier = Classifier(net, *_input_scaling(net, data, {}))
    train(classifier, data, cfg.train, cfg.augment, checkpoint_dir=run_dir / "checkpoints",
          resume_from=run_dir / "checkpoints" / "last.ckpt" if resume else None)
    return RunOutcome(run_dir, {"status": "worker", "name": cfg.name}, "")


# ----------------------------------------------- transfer learning (models/backbones/)

def _backbone_stages(net, in_shape) -> str:
    """A backbone's per-stage table (trainable / frozen), appended to summary.txt."""
    return "\n\n" + net.stage_table(in_shape) if hasattr(net, "stage_table") else ""


def _input_scaling(net, data: DataBundle, record: dict) -> tuple:
    """The data's mean/std, or the pretrained backbone's own (``net.input_normalization``)."""
    preferred = getattr(net, "input_normalization", None)
    if preferred is None:
        return data.mean, data.std
    record["input_normalization"] = {"mean": list(preferred[0]), "std": list(preferred[1]),
                                     "scale": "0-255", "from": "backbone weights"}
    return preferred


def _record_transfer(net, run_dir: Path, record: dict) -> None:
    """metrics.json: frozen/trainable counts and trainable layers; layers.json: every layer."""
    if not hasattr(net, "transfer_record"):
        return
    transfer = net.transfer_record()
    record["params"].update(transfer.pop("params"))
    record.update(transfer)
    write_json(run_dir / "layers.json", net.layer_rows())


def _restore_best(cfg: ExperimentConfig) -> bool:
    es = cfg.train.early_stopping
    return cfg.train.checkpoint is not None and (es is None or es.restore_best_weights)


def _train_record(result: TrainResult, summary) -> dict:
    return {"best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
            "train_seconds": round(result.train_seconds, 3), "stop_reason": result.stop_reason,
            "precision": result.precision.as_dict() if result.precision else None,
            "params": {"total": summary.total, "trainable": summary.trainable,
                       "non_trainable": summary.non_trainable}}


def _evaluate_splits(classifier: Classifier, data: DataBundle, cfg: ExperimentConfig
                     ) -> dict[str, EvalResult]:
    splits = data.splits()
    return {name: evaluate(classifier, splits[name], data.classes,
                           batch_size=cfg.eval.batch_size, channels_last=cfg.train.channels_last,
                           tta=cfg.eval.tta)
            for name in cfg.eval.splits if name in splits}


def _say_skipped(skipped: dict, say: Say, shown: int = 5) -> None:
    if skipped["count"]:
        names = ", ".join(entry["file"] for entry in skipped["files"][:shown])
        more = f" and {skipped['count'] - shown} more" if skipped["count"] > shown else ""
        say(f"skipped {skipped['count']} unreadable image(s) (data.on_bad_image: skip; listed "
            f"in data.json): {names}{more}")


def _predict_stage(classifier: Classifier, data: DataBundle, cfg: ExperimentConfig,
                   run_dir: Path, say: Say) -> dict:
    """The ``predict:`` section: label its images into the run folder (a Kaggle submission)."""
    spec = cfg.predict
    outcome = predict_to_csv(classifier, data.classes, data.in_shape, spec.source,
                             run_dir / spec.output, batch_size=cfg.eval.batch_size,
                             probabilities=spec.probabilities, tta=spec.tta,
                             id_column=spec.id_column, label_column=spec.label_column,
                             input_id_column=spec.input_id_column,
                             input_path_column=spec.input_path_column)
    say(f"predicted {outcome.count} images of {spec.source} into {outcome.out} in "
        f"{outcome.seconds:.2f} s ({outcome.images_per_s:,.0f} img/s, decoding "
        f"{outcome.decode_seconds:.2f} s)")
    return outcome.record()


def _write_result_files(run_dir: Path, cfg: ExperimentConfig, data: DataBundle,
                        results: dict[str, EvalResult], history: list[dict]) -> None:
    rows = [{"split": split, **row} for split, r in results.items()
            for row in per_class_csv_rows(r.metrics)]
    write_csv(run_dir / "per_class.csv", rows, PER_CLASS_FIELDS)
    write_wide_tables(run_dir, {split: r.metrics for split, r in results.items()})
    primary_split = "test" if "test" in results else next(iter(results), None)
    if primary_split is not None:
        cm = results[primary_split].metrics["confusion_matrix"]
        write_csv(run_dir / "confusion_matrix.csv",
                  [{"true": name, **dict(zip(data.classes, counts))}
                   for name, counts in zip(data.classes, cm)], ["true", *data.classes])
        plot_confusion_matrix(cm, data.classes, run_dir / "confusion_matrix.png",
                              title=f"{cfg.name} ({primary_split})")
    plot_curves(history, run_dir / "curves.png", title=cfg.name)




def write_wide_tables(run_dir: Path, scored: dict[str, dict]) -> None:
    """metrics_wide.csv (every split, a ``split`` column) and metrics_wide.md (report 000)."""
    if not scored:
        return
    first = next(iter(scored.values()))
    rows = [row for split, metrics in scored.items() for row in wide_csv_rows(metrics, split)]
    write_csv(run_dir / "metrics_wide.csv", rows, wide_fields(first))
    write_text(run_dir / "metrics_wide.md", wide_markdown(scored))


# ------------------------------------------------------------------ results of saved runs
# Repeats, evaluation of saved weights on other data, and predictions for new images. These
# wire the same stages as run_experiment; their imports are local to keep `cnnlab run` lean.

@dataclass
class SeedsOutcome:
    group: str
    seeds: list[int]
    outcomes: list[RunOutcome]


def run_seeds(cfg: ExperimentConfig, seeds: int, *, say: Say = print,
              on_run: Callable[[int, RunOutcome], None] = lambda seed, outcome: None
              ) -> SeedsOutcome:
    """Run ``cfg`` once per seed: ``train.seed`` = base seed + i for i < ``seeds``.

    ``data.split_seed`` is left alone, so every seed trains and is scored on the same split.
    Each seed is an ordinary run folder under ``runs/<name>/``; its metrics.json gains
    ``group`` (shared id), ``group_size`` and ``seed``. Only the first seed's stage output
    (data line, model summary) goes to ``say``. A diverged seed does not stop the others; an
    interrupted one does.
    """
    import secrets
    from datetime import datetime

    from cnnlab.errors import ConfigError

    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}.")
    check_source_keys(cfg.data)
    if seeds > 1 and layout(cfg.train).world_size > 1:
        # Lightning's launcher starts its ranks once per process, not once per seed.
        raise ConfigError("--seeds with train.devices > 1 (or torchrun) is not supported: run "
                          "the seeds one after another with --set train.seed=N.")
    group = f"{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
    base = cfg.train.seed
    done: list[RunOutcome] = []
    for i in range(seeds):
        seed = base + i
        seed_cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"seed": seed})})
        run_dir = new_run_dir(seed_cfg.runs_dir, seed_cfg.name)
        write_yaml(run_dir / "config.yaml", seed_cfg.model_dump(mode="json"))
        tag = {"group": group, "group_size": seeds, "seed": seed}
        try:
            outcome = _run_in(run_dir, seed_cfg, say=say if i == 0 else (lambda text: None),
                              resume=False)
        finally:
            _tag_metrics(run_dir, tag)
        outcome.metrics.update(tag)
        done.append(outcome)
        on_run(seed, outcome)
        if outcome.metrics.get("status") == "interrupted":
            break
    return SeedsOutcome(group, [base + i for i in range(len(done))], done)


def _tag_metrics(run_dir: Path, tag: dict) -> None:
    path = run_dir / "metrics.json"
    record = read_json(path) if path.is_file() else {}
    record.update(tag)
    write_json(path, record)


@dataclass
class EvaluationOutcome:
    eval_dir: Path
    record: dict  # what metrics.json holds; the scores are under "eval"


def evaluate_run(run_dir: Path, *, data_name: str = "imagefolder", data_root: Path | None = None,
                 overrides: list[str] | tuple[str, ...] = (), split: str = "all",
                 tta: bool = False, say: Say = print) -> EvaluationOutcome:
    """Score a run's saved weights on other labelled data, into ``RUN/evaluations/<id>/``.

    The data section starts from the run's own (``name``/``root`` replaced, no class subset or
    cap) and takes ``data.x=y`` overrides; images are resized to the run's input shape. Class
    names must be the run's (a subset is fine). Writes metrics.json (scores under ``eval``),
    per_class.csv, confusion_matrix.csv/.png and predictions.csv.
    """
    import secrets
    import time
    from datetime import datetime

    from cnnlab.config import apply_override
    from cnnlab.evaluate.inputs import load_labelled
    from cnnlab.evaluate.metrics import classification_metrics
    from cnnlab.evaluate.predict import PREDICTION_FIELDS, predict_with_tta, prediction_rows
    from cnnlab.store.artifact import load_run

    saved = load_run(run_dir)
    configure_cpu(saved.cfg.train.threads)
    raw = saved.cfg.model_dump(mode="json")
    raw["data"] = {**raw["data"], "name": data_name,
                   "root": str(data_root) if data_root is not None else None,
                   "classes": None, "max_per_class": None}
    for override in overrides:
        apply_override(raw, override if override.startswith("data.") else f"data.{override}")
    data_cfg = validate_config(raw, source="the evaluation data options").data
    labelled = load_labelled(data_cfg, saved.classes, saved.in_shape, split)
    say(f"evaluating {saved.run_dir} on {data_cfg.name}"
        f"{f' {data_cfg.root}' if data_cfg.root else ''} ({', '.join(labelled.parts)}): "
        f"{len(labelled.labels)} images")
    started = time.perf_counter()
    probs = predict_with_tta(saved.classifier, labelled.images, tta=tta,
                             batch_size=saved.cfg.eval.batch_size)
    speed = len(labelled.labels) / max(time.perf_counter() - started, 1e-9)
    metrics = classification_metrics(probs, labelled.labels, saved.classes)

    eval_dir = Path(saved.run_dir) / "evaluations" / (
        f"{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}")
    eval_dir.mkdir(parents=True, exist_ok=False)
    record = {"status": "completed", "kind": "evaluation", "name": saved.cfg.name,
              "run_dir": str(saved.run_dir),
              "data": {"name": data_cfg.name, "root": str(data_cfg.root) if data_cfg.root else None,
                       "parts": labelled.parts, "n": len(labelled.labels),
                       "in_shape": list(saved.in_shape), "tta": tta,
                       "overrides": list(overrides)},
              "eval": metrics, "predict_images_per_s": speed, **environment()}
    rows = [{"split": "eval", **row} for row in per_class_csv_rows(metrics)]
    write_csv(eval_dir / "per_class.csv", rows, PER_CLASS_FIELDS)
    write_wide_tables(eval_dir, {"eval": metrics})
    cm = metrics["confusion_matrix"]
    write_csv(eval_dir / "confusion_matrix.csv",
              [{"true": name, **dict(zip(saved.classes, counts))}
               for name, counts in zip(saved.classes, cm)], ["true", *saved.classes])
    plot_confusion_matrix(cm, saved.classes, eval_dir / "confusion_matrix.png",
                          title=f"{saved.cfg.name} on {data_cfg.name} ({len(labelled.labels)} images)")
    write_csv(eval_dir / "predictions.csv",
              prediction_rows(labelled.ids, probs, labelled.labels, saved.classes), PREDICTION_FIELDS)
    write_json(eval_dir / "metrics.json", record)
    return EvaluationOutcome(eval_dir, record)


def predict_run(run_dir: Path, source: Path, out: Path, *, probabilities: bool = False,
                tta: bool = False, id_column: str = "id", path_column: str | None = None,
                chunk: int = 2048) -> PredictOutcome:
    """Write ``id,label`` (Kaggle style; with ``probabilities`` one column per class) for an
    image folder, one image or a CSV of ids and image paths, from a saved run's weights."""
    from cnnlab.store.artifact import load_run

    out = safe_output_path(out)  # before loading anything: a refused --out costs nothing
    saved = load_run(run_dir)
    configure_cpu(saved.cfg.train.threads)
    return predict_to_csv(saved.classifier, saved.classes, saved.in_shape, source, out,
                          batch_size=saved.cfg.eval.batch_size, probabilities=probabilities,
                          tta=tta, input_id_column=id_column, input_path_column=path_column,
                          chunk=chunk)


__all__ = ["EvaluationOutcome", "PredictOutcome", "RunOutcome", "SeedsOutcome", "evaluate_run",
           "predict_run", "resume_experiment", "run_experiment", "run_seeds"]

"""The ``cnnlab`` command: run an experiment (or N seeds of it), sweep a series or a search of
experiments, resume a run, compare runs,
write report pages, predict, evaluate saved weights on other data, export, and list what the
registries hold.

User errors (a :class:`CnnlabError` from any layer) are printed once, here, as one paragraph
with exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from cnnlab.cli_catalogue import register as register_catalogue
from cnnlab.errors import CnnlabError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="cnnlab: convolutional image classification, one YAML file per experiment.")
console = Console()
err_console = Console(stderr=True)

from cnnlab.cli_data import data_app  # noqa: E402  (the `cnnlab data ...` commands)

app.add_typer(data_app, name="data")


@app.command()
def run(
    experiment: Path = typer.Argument(..., help="experiment YAML file"),
    set_: list[str] = typer.Option([], "--set", help="override a value: --set train.lr=1e-3"),
    runs_dir: Optional[Path] = typer.Option(None, "--runs-dir", help="root of run folders"),
    seeds: int = typer.Option(1, "--seeds", min=1,
                              help="repeat with train.seed = seed, seed+1, ... (same data split)"),
    mlflow: Optional[str] = typer.Option(None, "--mlflow", help="log to this MLflow tracking URI "
                                         "(same as --set tracking.mlflow=URI)"),
) -> None:
    """Train, evaluate and record one experiment (N times with --seeds N)."""
    from cnnlab.config import load_config
    from cnnlab.pipeline import run_experiment, run_seeds

    overrides = list(set_) + ([f"runs_dir={runs_dir}"] if runs_dir else [])
    if mlflow:
        # Quoted so YAML keeps the URI a string (an unquoted "true" would mean the env variable).
        overrides.append(f"tracking.mlflow={mlflow!r}" if mlflow not in ("true", "True")
                         else "tracking.mlflow=true")
    cfg = load_config(experiment, overrides)
    if seeds == 1:
        _finish(run_experiment(cfg, say=_say))
        return
    result = run_seeds(cfg, seeds, say=_say, on_run=_seed_line)
    _finish_seeds(result, cfg)


@app.command()
def sweep(
    sweep_file: Path = typer.Argument(..., help="sweep YAML file (base experiment + what varies)"),
    workers: int = typer.Option(1, "--workers", min=1, help="worker processes on this machine, "
                                "sharing the cores"),
    storage: Optional[str] = typer.Option(None, "--storage", help="Optuna storage URL, e.g. "
                                          "postgresql://user:pw@host/db (default: SQLite in "
                                          "the sweep folder)"),
    trials: Optional[int] = typer.Option(None, "--trials", min=1, help="trials to run "
                                         "(random/optuna)"),
    set_: list[str] = typer.Option([], "--set", help="override a value of every trial's "
                                   "experiment: --set train.epochs=5"),
    runs_dir: Optional[Path] = typer.Option(None, "--runs-dir", help="root of run folders"),
    resume: bool = typer.Option(False, "--resume", help="continue a stopped sweep, or join one "
                                "from another machine (with the same --storage)"),
    mlflow: Optional[str] = typer.Option(None, "--mlflow", help="log the sweep to this MLflow "
                                         "URI: one parent run, each trial a child run"),
) -> None:
    """Run a series (list), a grid or a search (random, Optuna TPE) of experiments."""
    from cnnlab.sweep import load_sweep, run_sweep

    loaded = load_sweep(sweep_file, trials=trials, runs_dir=runs_dir,
                        experiment_overrides=list(set_) + (
                            [f"tracking.mlflow={mlflow!r}"] if mlflow else []))
    s = loaded.sweep
    _say(f"sweep {s.name}: {s.method}, {s.planned_trials} trials, {s.metric} "
         f"({s.resolved_direction}), pruner {s.pruner.name}, folder {loaded.folder}")
    outcome = run_sweep(loaded, workers=workers, storage=storage, resume=resume, say=_say)
    _finish_sweep(outcome, sweep_file)


@app.command()
def resume(run_dir: Path = typer.Argument(..., help="run folder of an interrupted run")) -> None:
    """Continue an interrupted run from its last checkpoint."""
    from cnnlab.pipeline import resume_experiment

    _finish(resume_experiment(run_dir, say=_say))


@app.command()
def compare(
    targets: Optional[list[str]] = typer.Argument(
        None, help="run folders, folders of runs, or experiment name patterns (default: all runs)"),
    sort: Optional[str] = typer.Option(None, "--sort", help="metric: test.accuracy (default), "
                                       "val.accuracy, test.log_loss, test.macro.f1, train_seconds..."),
    baseline: Optional[str] = typer.Option(None, "--baseline", help="experiment to test the others "
                                           "against (Welch's t-test over seeds, alpha 0.05)"),
    fmt: str = typer.Option("table", "--format", help="table | csv | md | json"),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="where name patterns are looked up"),
    include_all: bool = typer.Option(False, "--all", help="include runs that did not complete"),
    out: Optional[Path] = typer.Option(None, "--out", help="write to this file instead of stdout"),
) -> None:
    """Compare experiments: one row each, seeds aggregated (mean ± std, n)."""
    from cnnlab.report import compare_output as cmp_mod

    if fmt not in ("table", "csv", "md", "json"):
        raise CnnlabError(f"--format {fmt!r} is not one of table, csv, md, json.")
    if out is not None:
        from cnnlab.store import safe_output_path

        out = safe_output_path(out)
    comparison = _comparison(targets or [], runs_dir, sort, baseline, include_all)
    if fmt == "table" and out is None:
        # Piped output is not squeezed to 80 columns: the table is meant to be read whole.
        wide = console if console.is_terminal else Console(width=240)
        wide.print(cmp_mod.to_table(comparison))
        return
    text = {"csv": cmp_mod.to_csv, "md": cmp_mod.to_markdown, "json": cmp_mod.to_json,
            "table": cmp_mod.to_markdown}[fmt](comparison)
    if out is not None:
        from cnnlab.store import write_text

        write_text(out, text)
        _say(f"wrote {out} ({len(comparison.rows)} experiments)")
    else:
        sys.stdout.write(text)
        sys.stdout.flush()


@app.command()
def report(
    targets: Optional[list[str]] = typer.Argument(
        None, help="a run folder; with --leaderboard: run folders, folders or name patterns"),
    against: Optional[Path] = typer.Option(None, "--against", help="another run folder to compare "
                                           "per-class results with"),
    leaderboard: bool = typer.Option(False, "--leaderboard", help="write the leaderboard page"),
    out: Optional[Path] = typer.Option(None, "--out", help="leaderboard file (default: "
                                       "leaderboard.html in the runs folder)"),
    sort: Optional[str] = typer.Option(None, "--sort", help="leaderboard: initial order"),
    baseline: Optional[str] = typer.Option(None, "--baseline", help="leaderboard: significance "
                                           "against this experiment"),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="where name patterns are looked up"),
    include_all: bool = typer.Option(False, "--all", help="leaderboard: include unfinished runs"),
    hard_examples: int = typer.Option(16, "--hard-examples", min=0,
                                      help="images in the gallery of highest-loss test images"),
) -> None:
    """Write report.md and a self-contained report.html into a run folder, or a leaderboard page."""
    targets = list(targets or [])
    if leaderboard:
        from cnnlab.report.leaderboard import write_leaderboard

        if against is not None:
            raise CnnlabError("--against is for a run's report, not for --leaderboard.")
        comparison = _comparison(targets, runs_dir, sort, baseline, include_all)
        if out is None:
            first = Path(targets[0]) if len(targets) == 1 else None
            base = first if first is not None and first.is_dir() else runs_dir
            out = base / "leaderboard.html"
        from cnnlab.store import safe_output_path

        path = write_leaderboard(comparison, safe_output_path(out))
        _say(f"leaderboard of {len(comparison.rows)} experiments: {path}")
        return
    if len(targets) != 1:
        raise CnnlabError(f"cnnlab report takes one run folder (got {len(targets)}); use "
                          "--leaderboard to report on several.")
    if (Path(targets[0]) / "sweep.json").is_file():
        from cnnlab.sweep.report import write_sweep_report

        sweep_report = write_sweep_report(Path(targets[0]))
        for note in sweep_report.notes:
            _say(f"note: {note}")
        _say(f"report: {sweep_report.markdown}")
        _say(f"report: {sweep_report.html}")
        return
    from cnnlab.report.page import write_report

    result = write_report(Path(targets[0]), against=against, hard_examples=hard_examples, say=_say)
    for note in result.notes:
        _say(f"note: {note}")
    _say(f"report: {result.markdown}")
    _say(f"report: {result.html}")


@app.command()
def predict(
    run_dir: Path = typer.Argument(..., help="run folder with model.safetensors"),
    source: Path = typer.Argument(..., help="image folder, one image, or a CSV of ids and image "
                                  "paths"),
    out: Path = typer.Option(Path("submission.csv"), "--out", help="CSV to write (id,label)"),
    probabilities: bool = typer.Option(False, "--probabilities", help="add one column per class"),
    tta: bool = typer.Option(False, "--tta", help="average with the horizontally flipped image"),
    id_column: str = typer.Option("id", "--id-column", help="CSV input: the id column"),
    path_column: Optional[str] = typer.Option(None, "--path-column", help="CSV input: the image "
                                              "path column (default: path, image, file, ...)"),
) -> None:
    """Predict labels for new images: a Kaggle-style CSV of id,label."""
    from cnnlab.pipeline import predict_run

    result = predict_run(run_dir, source, out, probabilities=probabilities, tta=tta,
                         id_column=id_column, path_column=path_column)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(result.label_counts.items(),
                                                      key=lambda kv: (-kv[1], kv[0])))
    _say(f"wrote {result.count} predictions to {result.out} ({counts})")


@app.command()
def evaluate(
    run_dir: Path = typer.Argument(..., help="run folder with model.safetensors"),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="labelled data: a folder "
                                             "of class folders (or the dataset's root)"),
    data_name: str = typer.Option("imagefolder", "--data-name", help="dataset source "
                                  "(`cnnlab datasets`)"),
    set_: list[str] = typer.Option([], "--set", help="data setting: --set data.max_per_class=100"),
    split: str = typer.Option("all", "--split", help="all, or one part of the source: train, val, test"),
    tta: bool = typer.Option(False, "--tta", help="average with the horizontally flipped image"),
) -> None:
    """Score a run's saved weights on other labelled data, into RUN/evaluations/<id>/."""
    from cnnlab.pipeline import evaluate_run
    from cnnlab.report.tables import per_class_table

    if split not in ("all", "train", "val", "test"):
        raise CnnlabError(f"--split {split!r} is not one of all, train, val, test.")
    if data_name == "imagefolder" and data_root is None:
        raise CnnlabError("cnnlab evaluate needs --data-root PATH (a folder of class folders), or "
                          "--data-name for another dataset source.")
    result = evaluate_run(run_dir, data_name=data_name, data_root=data_root, overrides=set_,
                          split=split, tta=tta, say=_say)
    scored = result.record["eval"]
    console.print(per_class_table(scored, title=f"{result.record['name']}: evaluation"))
    _say(f"accuracy {scored['accuracy']:.4f}, log loss {scored['log_loss']:.4f} on "
         f"{scored['n']} images")
    _say(f"results: {result.eval_dir}")


@app.command()
def export(
    run_dir: Path = typer.Argument(..., help="run folder with model.safetensors"),
    fmt: str = typer.Option(..., "--format", help="onnx | torchscript"),
    tolerance: float = typer.Option(1e-4, "--tolerance", help="largest allowed difference of any "
                                    "probability from PyTorch's"),
    batch: int = typer.Option(16, "--batch", min=1, help="random images the check runs"),
) -> None:
    """Write model.onnx or model.torchscript.pt and check it against PyTorch."""
    from cnnlab.export import export_run

    result = export_run(run_dir, fmt, batch=batch, tolerance=tolerance)
    engine = "ONNX Runtime" if fmt == "onnx" else "torch.jit.load"
    verdict = "passed" if result.passed else "FAILED"
    _say(f"wrote {result.path} ({result.bytes / 1024:.0f} KiB): input pixels float32 "
         f"({', '.join(map(str, result.input['shape']))}) on the 0-255 scale, output probabilities")
    _say(f"check ({engine}, {batch} random images): max abs difference of probabilities "
         f"{result.max_abs_diff:.2e} {'<' if result.passed else '>='} {result.tolerance:g}: {verdict} "
         "(recorded in export.json)")
    if not result.passed:
        raise typer.Exit(1)


@app.command()
def sync(
    targets: list[str] = typer.Argument(..., help="run folders, folders of runs, or experiment "
                                        "name patterns"),
    mlflow: str = typer.Option(..., "--mlflow", help="MLflow tracking URI to upload to"),
    experiment: Optional[str] = typer.Option(None, "--experiment", help="MLflow experiment "
                                             "(default: the run's tracking.experiment, or the "
                                             "first part of its name)"),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="where name patterns are looked up"),
) -> None:
    """Upload run folders to MLflow (runs already there are left alone: syncing twice is safe)."""
    from cnnlab.config.uri import check_tracking_uri
    from cnnlab.track.sync import sync_targets

    try:
        check_tracking_uri(mlflow)
    except ValueError as exc:
        raise CnnlabError(f"--mlflow: {exc}") from None
    failures = sync_targets(targets, runs_dir, mlflow, experiment=experiment, say=_say)
    if failures:
        raise typer.Exit(1)


def _comparison(targets: list[str], runs_dir: Path, sort: Optional[str], baseline: Optional[str],
                include_all: bool):
    from cnnlab.report.compare import compare as build
    from cnnlab.store.catalog import find_runs

    catalog = find_runs(targets, runs_dir)
    for problem in catalog.skipped:
        err_console.print(f"skipped {problem}", markup=False, highlight=False, soft_wrap=True)
    return build(catalog.runs, sort=sort, baseline=baseline, include_all=include_all)


@app.command()
def plan(
    experiment: Path = typer.Argument(..., help="experiment YAML file"),
    set_: list[str] = typer.Option([], "--set", help="override a value: --set train.lr=1e-3"),
    steps: int = typer.Option(5, "--steps", min=1, help="training steps to time"),
) -> None:
    """Parameters, MFLOPs per image and the projected time of an experiment, before training."""
    from cnnlab.config import load_config
    from cnnlab.plan import plan_experiment

    cfg = load_config(experiment, list(set_))
    console.print(plan_experiment(cfg, steps=steps).to_text(), markup=False, highlight=False,
                  soft_wrap=True)


def _say(text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _finish(outcome) -> None:
    from cnnlab.report.tables import per_class_table

    metrics = outcome.metrics
    if metrics["status"] == "worker":  # a rank > 0 of a multi-process run: rank 0 reports
        return
    for split in ("val", "test"):
        if split in metrics and split == ("test" if "test" in metrics else "val"):
            console.print(per_class_table(metrics[split], title=f"{metrics['name']}: {split}"))
    parts = [f"status {metrics['status']}"]
    for split in ("val", "test"):
        if split in metrics:
            parts.append(f"{split} accuracy {metrics[split]['accuracy']:.4f}")
    if metrics.get("epochs_run") is not None:
        parts.append(f"{metrics['epochs_run']} epochs (best {metrics.get('best_epoch')})")
    if metrics.get("train_seconds") is not None:
        parts.append(f"{metrics['train_seconds']:.1f} s training")
    if metrics.get("skipped_images"):
        parts.append(f"{metrics['skipped_images']} unreadable image(s) skipped (data.json)")
    console.print(", ".join(parts), markup=False, highlight=False, soft_wrap=True)
    if metrics.get("submission"):
        sub = metrics["submission"]
        _say(f"submission: {outcome.run_dir / sub['file']} ({sub['rows']} rows, "
             f"{sub['images_per_s']:,.0f} img/s)")
    if metrics.get("resume"):
        console.print(f"resume with: {metrics['resume']}", markup=False, highlight=False, soft_wrap=True)
    console.print(f"results: {outcome.run_dir}", markup=False, highlight=False, soft_wrap=True)
    if metrics["status"] not in ("completed",):
        raise typer.Exit(1)


def _seed_line(seed: int, outcome) -> None:
    metrics = outcome.metrics
    parts = [f"seed {seed}: status {metrics['status']}"]
    for split in ("val", "test"):
        if split in metrics:
            parts.append(f"{split} accuracy {metrics[split]['accuracy']:.4f}")
    if metrics.get("train_seconds") is not None:
        parts.append(f"{metrics['train_seconds']:.1f} s")
    parts.append(str(outcome.run_dir))
    _say(", ".join(parts))


def _finish_seeds(result, cfg) -> None:
    from cnnlab.report.compare_output import fmt_mean_std
    from cnnlab.report.significance import mean_std

    outcomes = result.outcomes
    completed = [o for o in outcomes if o.metrics["status"] == "completed"]
    parts = [f"{len(completed)} of {len(outcomes)} seeds completed "
             f"(train.seed {result.seeds[0]}-{result.seeds[-1]}, group {result.group})"]
    for split in ("val", "test"):
        values = [o.metrics[split]["accuracy"] for o in completed if split in o.metrics]
        if values:
            parts.append(f"{split} accuracy {fmt_mean_std(*mean_std(values))}")
    seconds = [o.metrics["train_seconds"] for o in completed if o.metrics.get("train_seconds")]
    if seconds:
        parts.append(f"{sum(seconds) / len(seconds):.1f} s training per seed")
    console.print(", ".join(parts) + " (mean ± sample std over seeds)", markup=False,
                  highlight=False, soft_wrap=True)
    root = Path(cfg.runs_dir) / cfg.name
    _say(f"results: {root} (one run folder per seed; compare with: cnnlab compare {root})")
    if len(completed) != len(outcomes):
        raise typer.Exit(1)


def _finish_sweep(outcome, sweep_file: Path) -> None:
    table = Table(title=f"trials ({outcome.done} of {outcome.planned} done)")
    for column in ("trial", "state", "status", "value", "what it changes", "epochs", "seconds"):
        table.add_column(column, overflow="fold")
    for row in outcome.rows:
        value = row.get("value")
        seconds = row.get("train_seconds")
        table.add_row(str(row["number"]), row["state"], str(row.get("status") or ""),
                      f"{value:.4f}" if isinstance(value, float) else "",
                      str(row.get("label") or ""), str(row.get("epochs_run") or ""),
                      f"{seconds:.1f}" if isinstance(seconds, (int, float)) else "")
    console.print(table)
    for note in outcome.notes:
        _say(f"note: {note}")
    if outcome.best:
        best = outcome.best
        _say(f"best: trial {best['number']} ({best.get('label') or best['params']}): "
             f"{best['value']:.4f}")
    if outcome.report:
        _say(f"report: {outcome.report}")
    _say(f"results: {outcome.folder} (trials.csv, trials.md; compare with: cnnlab compare "
         f"{outcome.folder})")
    if outcome.status != "completed":
        _say(f"sweep {outcome.status}: continue it with: cnnlab sweep {sweep_file} --resume")
        raise typer.Exit(1)


# The listing commands (recipes, datasets, models, ...) come last in --help, after the workflow.
register_catalogue(app)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors -> one paragraph on stderr and exit code 2."""
    try:
        code = app(args=argv, standalone_mode=False)
    except CnnlabError as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted", markup=False)
        sys.exit(130)
    except Exception as exc:  # click's usage errors carry their own exit code (2)
        if isinstance(exc, _click_types("ClickException")):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, _click_types("Abort")):
            sys.exit(1)
        raise
    # Without standalone mode, click returns a command's typer.Exit code instead of exiting.
    if isinstance(code, int) and code:
        sys.exit(code)


def _click_types(name: str) -> tuple[type, ...]:
    """``name`` from click and from the copy of click that newer typer versions vendor
    (``typer._click``, whose classes are not click's): a usage error from either is a message."""
    import importlib

    found = []
    for module in ("click.exceptions", "typer._click.exceptions"):
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(found)


if __name__ == "__main__":
    main()

"""The sweep report: ``report.md`` and a self-contained ``report.html`` in a sweep folder.

It reads what ``cnnlab sweep`` left there (``sweep.json``, ``sweep.yaml``, the Optuna study,
``trials.csv`` and the trials' run folders) and shows: the sweep at a glance (method, metric,
trials completed/pruned/failed, the best trial), the trials table, Optuna's optimisation
history and parameter-importance plots, the leaderboard of the trials' runs (the same
comparison as ``cnnlab compare``) and, for ``method: list`` sweeps, the series table: each
step's change from the previous one and the metric's change (in points for accuracies).

The study is opened from ``study.db`` in the folder, or from ``storage`` when the caller has
the unmasked URL of a server; where it cannot be opened the report is built from
``trials.csv`` and says that the plots are absent and why.
"""

from __future__ import annotations

import csv
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from cnnlab.errors import CnnlabError, RunError
from cnnlab.report.compare import plain_text
from cnnlab.report.document import (Block, Heading, Image, Paragraph, TableBlock, markdown_table,
                                    render_html, render_markdown)
from cnnlab.store import read_json, write_text
from cnnlab.sweep.study import mask_url, trial_run_dir
from cnnlab.sweep.series import config_changes, format_delta, format_value, in_points

__all__ = ["SweepReport", "SweepTrial", "Sweep", "load_sweep_folder", "series_table_markdown",
           "write_sweep_report"]

HISTORY_PNG = "optimization_history.png"
IMPORTANCE_PNG = "param_importances.png"
LEADERBOARD_HTML = "leaderboard.html"
# trials.csv columns that are not parameters (the contract of the sweep folder).
_TRIAL_COLUMNS = ("number", "state", "status", "value", "label", "epochs_run", "train_seconds",
                  "run_dir")


@dataclass
class SweepReport:
    markdown: Path
    html: Path
    notes: list[str] = field(default_factory=list)


@dataclass
class SweepTrial:
    number: int
    state: str  # Optuna's: COMPLETE, PRUNED, FAIL, RUNNING, WAITING
    status: str  # the run's: completed, pruned, diverged, failed, interrupted (or "" unknown)
    value: float | None
    params: dict[str, Any]
    label: str = ""
    epochs_run: int | None = None
    train_seconds: float | None = None
    run_dir: Path | None = None  # absolute; None when the run folder is not there


@dataclass
class Sweep:
    folder: Path
    info: dict[str, Any]  # sweep.json
    spec: dict[str, Any]  # sweep.yaml
    trials: list[SweepTrial]
    study: Any = None  # optuna.Study, or None where it could not be opened
    notes: list[str] = field(default_factory=list)

    def _get(self, key: str, default: Any = None) -> Any:
        return self.info.get(key, self.spec.get(key, default))

    @property
    def name(self) -> str:
        return str(self._get("name") or self.folder.name)

    @property
    def method(self) -> str:
        return str(self._get("method") or "?")

    @property
    def metric(self) -> str:
        return str(self._get("metric") or "value")

    @property
    def direction(self) -> str:
        return str(self._get("direction") or "maximize")

    def count(self, state: str) -> int:
        return sum(1 for t in self.trials if t.state == state)

    @property
    def best(self) -> SweepTrial | None:
        done = [t for t in self.trials if t.state == "COMPLETE" and _finite(t.value)]
        if not done:
            return None
        pick = max if self.direction == "maximize" else min
        return pick(done, key=lambda t: t.value)  # on a tie, the first (trials are in number order)


# ------------------------------------------------------------------------------ loading

def load_sweep_folder(sweep_dir: Path, *, storage: str | None = None) -> Sweep:
    """Read a sweep folder; ``storage`` is the study's unmasked URL where it is not study.db."""
    folder = Path(sweep_dir)
    if not (folder / "sweep.json").is_file():
        raise RunError(f"{folder} is not a sweep folder: it has no sweep.json (cnnlab sweep "
                       "writes one into <runs_dir>/<sweep name>/).")
    info = read_json(folder / "sweep.json")
    spec_path = folder / "sweep.yaml"
    spec = yaml.safe_load(spec_path.read_text(encoding="utf-8")) if spec_path.is_file() else {}
    sweep = Sweep(folder, info if isinstance(info, dict) else {},
                  spec if isinstance(spec, dict) else {}, [])
    sweep.study = _open_study(sweep, storage)
    if sweep.study is not None:
        sweep.trials = [_from_optuna(sweep.folder, t) for t in sweep.study.get_trials(deepcopy=False)]
    elif (folder / "trials.csv").is_file():
        sweep.trials = _from_csv(folder)
    for trial in sweep.trials:
        if trial.run_dir is not None and not trial.status and (trial.run_dir / "metrics.json").is_file():
            trial.status = str(read_json(trial.run_dir / "metrics.json").get("status", ""))
    sweep.trials.sort(key=lambda t: t.number)
    return sweep


def _open_study(sweep: Sweep, storage: str | None) -> Any:
    import optuna

    url = storage
    if url is None and (sweep.folder / "study.db").is_file():
        url = f"sqlite:///{(sweep.folder / 'study.db').resolve()}"
    recorded = sweep.info.get("storage")
    if url is None and recorded and "***" not in str(recorded):
        url = str(recorded)
    if url is None:
        sweep.notes.append("The Optuna study could not be opened: the folder has no study.db and "
                           "the recorded storage URL hides its password (pass the storage URL); "
                           "trials are read from trials.csv and Optuna's plots are absent.")
        return None
    try:
        return optuna.load_study(study_name=sweep.info.get("study_name"), storage=url)
    except Exception as exc:  # any storage failure: the report goes on from trials.csv
        sweep.notes.append(f"The Optuna study could not be opened at {mask_url(url)} "
                           f"({type(exc).__name__}: {exc}); trials are read from trials.csv and "
                           "Optuna's plots are absent.")
        return None


def _from_optuna(folder: Path, trial: Any) -> SweepTrial:
    attrs = trial.user_attrs
    value = trial.value if trial.values is not None and len(trial.values) == 1 else None
    return SweepTrial(
        number=trial.number, state=trial.state.name, status=str(attrs.get("status", "")),
        value=float(value) if value is not None else None, params=dict(trial.params),
        label=str(attrs.get("label") or ""), epochs_run=attrs.get("epochs_run"),
        train_seconds=attrs.get("train_seconds"),
        run_dir=trial_run_dir(folder, trial.number, attrs.get("run_dir")))


def _from_csv(folder: Path) -> list[SweepTrial]:
    with open(folder / "trials.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    trials = []
    for row in rows:
        number = int(row["number"])
        trials.append(SweepTrial(
            number=number, state=row.get("state") or "", status=row.get("status") or "",
            value=_number(row.get("value")),
            params={k: _parse(v) for k, v in row.items() if k not in _TRIAL_COLUMNS},
            label=row.get("label") or "", epochs_run=_number(row.get("epochs_run"), int),
            train_seconds=_number(row.get("train_seconds")),
            run_dir=trial_run_dir(folder, number, row.get("run_dir"))))
    return trials


def _number(text: Any, kind: Callable = float) -> Any:
    try:
        return kind(float(text)) if text not in (None, "") else None
    except ValueError:
        return None


def _parse(text: str) -> Any:
    return yaml.safe_load(text) if text else None


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


# ------------------------------------------------------------------------------ blocks

def write_sweep_report(sweep_dir: Path, *, storage: str | None = None) -> SweepReport:
    """Write ``report.md`` and ``report.html`` (and the plots and ``leaderboard.html`` they
    show) into the sweep folder. ``storage``: the study's unmasked URL, where it is not the
    folder's study.db."""
    sweep = load_sweep_folder(sweep_dir, storage=storage)
    notes = list(sweep.notes)
    blocks: list[Block] = [Heading(1, "Sweep"), overview_block(sweep, storage)]
    search_space = search_space_block(sweep.spec)
    if search_space is not None:
        blocks += [Heading(2, "Search space"), search_space]
    if sweep.method == "list":
        blocks += [Heading(1, "Series"), series_block(sweep)]
    blocks += [Heading(1, "Trials"), trials_block(sweep)]
    blocks += plot_blocks(sweep, notes)
    blocks += leaderboard_blocks(sweep, notes)
    if notes:
        blocks += [Heading(1, "Notes"), *[Paragraph(note) for note in notes]]
    title = f"Sweep {sweep.name}"
    md = write_text(sweep.folder / "report.md", render_markdown(title, blocks, sweep.folder))
    page = write_text(sweep.folder / "report.html", render_html(title, blocks))
    return SweepReport(md, page, notes)


def series_table_markdown(sweep_dir: Path, *, storage: str | None = None) -> str:
    """The series table of a sweep (steps in trial order, each step's change and the metric's
    change from the previous step) as Markdown, for docs to embed."""
    return markdown_table(series_block(load_sweep_folder(sweep_dir, storage=storage))) + "\n"


def overview_block(sweep: Sweep, storage: str | None = None) -> TableBlock:
    done, pruned, failed = sweep.count("COMPLETE"), sweep.count("PRUNED"), sweep.count("FAIL")
    running = sweep.count("RUNNING")
    counts = f"{done} completed, {pruned} pruned, {failed} failed"
    if running:
        counts += f", {running} running"
    planned = sweep.info.get("trials_planned", sweep.spec.get("trials"))
    if planned:
        counts += f" (of {planned} planned)"
    best = sweep.best
    points = in_points(sweep.metric, [t.value for t in sweep.trials])
    if best is None:
        best_text = "none yet: no trial has completed"
    else:
        shown = format_value(best.value, points) + ("%" if points else "")
        params = ", ".join(f"{k}={plain_text(v)}" for k, v in best.params.items())
        best_text = f"{shown} at trial {best.number}" + (f" ({best.label})" if best.label else "")
        if params:
            best_text += f": {params}"
    pruner = sweep.spec.get("pruner")
    rows = [["name", sweep.name],
            ["method", sweep.method + (f", pruner {pruner}" if pruner else "")],
            ["metric", f"{sweep.metric} ({sweep.direction})"],
            ["trials", counts], ["best", best_text]]
    if sweep.spec.get("base"):
        rows.insert(2, ["base experiment", str(sweep.spec["base"])])
    if sweep.info.get("status"):
        rows.append(["status", str(sweep.info["status"])])
    url = sweep.info.get("storage") or (storage and mask_url(storage))
    if not url and (sweep.folder / "study.db").is_file():
        url = "sqlite:///study.db (in the sweep folder)"
    rows.append(["storage", mask_url(str(url)) if url else "-"])
    for key in ("created", "updated"):
        if sweep.info.get(key):
            rows.append([key, str(sweep.info[key])])
    return TableBlock(["setting", "value"], rows)


def search_space_block(spec: dict[str, Any]) -> TableBlock | None:
    parameters = spec.get("parameters") or {}
    if not isinstance(parameters, dict) or not parameters:
        return None
    rows = []
    for path, dist in parameters.items():
        if isinstance(dist, dict):
            rows.append([str(path), ", ".join(f"{k} {plain_text(v)}" for k, v in dist.items()
                                              if v is not None)])
        else:
            rows.append([str(path), plain_text(dist)])
    return TableBlock(["parameter", "distribution"], rows)


def trials_block(sweep: Sweep) -> TableBlock | Paragraph:
    if not sweep.trials:
        return Paragraph("No trial has been recorded yet.")
    points = in_points(sweep.metric, [t.value for t in sweep.trials])
    names = list(dict.fromkeys(k for t in sweep.trials for k in t.params))
    labels = any(t.label for t in sweep.trials)
    metric = f"{sweep.metric} (%)" if points else sweep.metric
    headers = ["#", "state", "status", metric, *names, *(["label"] if labels else []),
               "epochs", "train time (s)", "run folder"]
    rows = []
    for t in sweep.trials:
        run = _relative(t.run_dir, sweep.folder) if t.run_dir is not None else "missing"
        rows.append([str(t.number), t.state, t.status or "-", format_value(t.value, points),
                     *[plain_text(t.params[n]) if n in t.params else "-" for n in names],
                     *([t.label or "-"] if labels else []),
                     str(t.epochs_run) if t.epochs_run is not None else "-",
                     f"{t.train_seconds:.1f}" if _finite(t.train_seconds) else "-", run])
    numeric = {0, 3, len(headers) - 3, len(headers) - 2}
    best = sweep.best
    caption = (f"Best: trial {best.number}." if best else "No completed trial yet.")
    return TableBlock(headers, rows, numeric=numeric,
                      caption=caption + " state is Optuna's; status is the run's (cnnlab).")


def series_block(sweep: Sweep) -> TableBlock | Paragraph:
    if not sweep.trials:
        return Paragraph("No step has been recorded yet.")
    points = in_points(sweep.metric, [t.value for t in sweep.trials])
    configs = {t.number: _config(t) for t in sweep.trials}
    rows = []
    previous: SweepTrial | None = None
    for step, trial in enumerate(sweep.trials, start=1):
        config = configs[trial.number]
        if previous is None:
            changes = "first step"
        elif config is None or configs[previous.number] is None:
            changes = "- (run folder missing)"
        else:
            changes = "; ".join(config_changes(configs[previous.number], config)) or "nothing"
        value = format_value(trial.value, points)
        if value == "-" and trial.status:
            pruned = trial.status == "pruned" and trial.epochs_run
            stopped = f" at epoch {trial.epochs_run}" if pruned else ""
            value = f"- ({trial.status}{stopped})"
        rows.append([str(step), str(trial.number), trial.label or "-", changes, value,
                     format_delta(trial.value, previous.value if previous else None, points)])
        previous = trial
    unit = " (%)" if points else ""
    return TableBlock(["step", "trial", "label", "changes from the previous step",
                       f"{sweep.metric}{unit}", "change (points)" if points else "change"],
                      rows, numeric={0, 1, 4, 5},
                      caption="Steps in trial order. Changes list the settings that differ from "
                              "the previous step's config.yaml (seed, threads and other settings "
                              "that cannot change a result left out); the change of the metric is "
                              "from the previous step's value (- where either step has none).")


def _config(trial: SweepTrial) -> dict[str, Any] | None:
    if trial.run_dir is None or not (trial.run_dir / "config.yaml").is_file():
        return None
    loaded = yaml.safe_load((trial.run_dir / "config.yaml").read_text(encoding="utf-8"))
    return loaded if isinstance(loaded, dict) else None


# ------------------------------------------------------------------------------- plots

def importance_absent_reason(sweep: Sweep) -> str | None:
    """Why parameter importance cannot be computed (None where it can)."""
    done = [t for t in sweep.trials if t.state == "COMPLETE" and _finite(t.value)]
    if len(done) < 2:
        return f"it needs at least 2 completed trials ({len(done)} so far)"
    names = {k for t in done for k in t.params}
    if not names:
        return "the trials have no parameters"
    spread = [n for n in names if len({repr(t.params.get(n)) for t in done}) > 1]
    if not spread:
        return "no parameter took more than one value among the completed trials"
    return None


def plot_blocks(sweep: Sweep, notes: list[str]) -> list[Block]:
    blocks: list[Block] = [Heading(1, "Optimisation")]
    if sweep.study is None:
        return blocks + [Paragraph("Optuna's plots are absent: the study could not be opened "
                                   "(see the notes).")]
    from optuna.visualization.matplotlib import plot_optimization_history, plot_param_importances

    done = sweep.count("COMPLETE")
    blocks.append(Heading(2, "Optimisation history"))
    if done == 0:
        blocks.append(Paragraph("The optimisation history is absent: no trial has completed."))
    else:
        path = _optuna_png(lambda: plot_optimization_history(sweep.study, target_name=sweep.metric),
                           sweep.folder / HISTORY_PNG, notes)
        if path is not None:
            blocks.append(Image(path, "optimisation history",
                                f"{sweep.metric} of each completed trial and the best so far "
                                f"({sweep.direction})."))
    blocks.append(Heading(2, "Parameter importance"))
    reason = importance_absent_reason(sweep)
    if reason is not None:
        blocks.append(Paragraph(f"Parameter importance is absent: {reason}."))
        return blocks
    path = _optuna_png(lambda: plot_param_importances(sweep.study, target_name=sweep.metric),
                       sweep.folder / IMPORTANCE_PNG, notes)
    if path is not None:
        blocks.append(Image(path, "parameter importance",
                            f"How much of the variation of {sweep.metric} over the completed "
                            "trials each parameter explains (Optuna's default evaluator); with "
                            "few trials this is a rough guide."))
    else:
        blocks.append(Paragraph("Parameter importance is absent: Optuna could not compute it "
                                "(see the notes)."))
    return blocks


def _optuna_png(draw: Callable[[], Any], path: Path, notes: list[str]) -> Path | None:
    """Draw with optuna.visualization.matplotlib and save the PNG; None (and a note) on failure."""
    import matplotlib
    import matplotlib.pyplot as plt
    from optuna.exceptions import ExperimentalWarning

    from cnnlab.report.plots import save_png

    # Optuna draws through pyplot and sets the ggplot style globally; rc_context puts the
    # style back so later figures of this process look as they did.
    with warnings.catch_warnings(), matplotlib.rc_context():
        warnings.simplefilter("ignore", ExperimentalWarning)
        fig = None
        try:
            fig = draw().figure
            fig.set_size_inches(7.5, 4.5)
            fig.tight_layout()  # long dotted parameter names need the left margin
            return save_png(fig, path)
        except Exception as exc:  # a plot Optuna cannot draw must not lose the whole report
            notes.append(f"{path.name} could not be drawn ({type(exc).__name__}: {exc}).")
            return None
        finally:
            if fig is not None:
                plt.close(fig)


# -------------------------------------------------------------------------- leaderboard

def compare_metric(metric: str) -> str:
    """The metrics.json path of a history key: ``val_accuracy`` -> ``val.accuracy``."""
    for split in ("val", "test"):
        if metric.startswith(f"{split}_"):
            rest = metric[len(split) + 1:]
            return f"{split}.{'log_loss' if rest == 'loss' else rest}"
    return metric


def leaderboard_blocks(sweep: Sweep, notes: list[str]) -> list[Block]:
    from cnnlab.report.compare import CompareError, compare
    from cnnlab.report.compare_output import numeric_columns, squeezed
    from cnnlab.report.leaderboard import write_leaderboard
    from cnnlab.store.catalog import find_runs

    blocks: list[Block] = [Heading(1, "Leaderboard")]
    try:
        catalog = find_runs([sweep.folder])
    except CnnlabError as exc:
        return blocks + [Paragraph(f"No leaderboard: {exc}")]
    notes += [f"skipped {problem}" for problem in catalog.skipped]
    try:
        try:
            cmp = compare(catalog.runs, sort=compare_metric(sweep.metric), include_all=True)
        except CompareError:  # the sweep metric is not in metrics.json: compare's default order
            cmp = compare(catalog.runs, include_all=True)
    except CompareError as exc:
        return blocks + [Paragraph(f"No leaderboard: {exc}")]
    columns, cells, caption = squeezed(cmp)
    page = write_leaderboard(cmp, sweep.folder / LEADERBOARD_HTML, title=f"{sweep.name} leaderboard")
    blocks.append(Paragraph(f"The trials' runs, as cnnlab compare {sweep.folder} --all shows them; "
                            f"{page.name} beside this report sorts them and plots accuracy "
                            "against training time."))
    blocks.append(TableBlock(columns, cells, numeric=numeric_columns(cmp, columns), caption=caption))
    return blocks


def _relative(path: Path, base: Path) -> str:
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return str(path)

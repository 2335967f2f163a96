"""The sweep report on sweep folders built by hand (as the contract of the sweep folder says
cnnlab sweep leaves them): three real 1-epoch digits runs, one of them pruned, an Optuna
SQLite study with their trials, sweep.json, sweep.yaml and trials.csv."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import optuna
import pytest
import yaml

from cnnlab.cli import main
from cnnlab.config.load import validate_config
from cnnlab.pipeline import run_experiment
from cnnlab.store import read_json, write_json, write_yaml
from cnnlab.sweep.report import (importance_absent_reason, load_sweep_folder, series_table_markdown,
                                 write_sweep_report)
from cnnlab.sweep.series import config_changes, format_delta
from conftest import tiny_experiment

LR = optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)
CONV = {"conv2d": {"filters": 4, "padding": "same", "activation": "relu"}}
BASE_LAYERS = [CONV, {"maxpool2d": {"pool": 2}}, {"flatten": {}}]
# (label, lr, layers, pruned) of each step of the list sweep.
STEPS = [("01_base.yaml", 1e-2, BASE_LAYERS, False),
         ("02_batchnorm.yaml", 1e-4, [CONV, {"batchnorm": {}}, *BASE_LAYERS[1:]], False),
         ("03_lower_lr.yaml", 1e-3, [CONV, {"batchnorm": {}}, *BASE_LAYERS[1:]], True)]


def write_trials_csv(folder: Path, rows: list[dict]) -> None:
    fields = ["number", "state", "status", "value", "train.lr", "label", "epochs_run",
              "train_seconds", "run_dir"]
    with open(folder / "trials.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def new_study(folder: Path, name: str, direction: str = "maximize") -> optuna.Study:
    return optuna.create_study(study_name=name, storage=f"sqlite:///{folder / 'study.db'}",
                               direction=direction)


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    root = tmp_path_factory.mktemp("sweeps")
    runs_dir = root / "runs"
    name = "sweeps/series"
    folder = runs_dir / name
    study = new_study(_mkdir(folder), name)
    csv_rows, values = [], []
    for number, (label, lr, layers, pruned) in enumerate(STEPS):
        cfg = tiny_experiment(root, {"name": "digits", "val_split": 0.2, "test_split": 0.2,
                                     "max_per_class": 40},
                              name=f"{name}/trial-{number:03d}", model={"layers": layers},
                              train={"lr": lr, "threads": 1, "batch_size": 32})
        if pruned:
            # Not trained (it saves seconds): the previous run folder, renamed and given this
            # step's config, reads as a pruned trial's does: no evaluation, the epoch it stopped at.
            run_dir = folder / f"trial-{number:03d}" / "20261203-210000-abcd"
            shutil.copytree(previous, run_dir)
            write_yaml(run_dir / "config.yaml", validate_config(cfg).model_dump(mode="json"))
            metrics = read_json(run_dir / "metrics.json")
            value = metrics["val"]["accuracy"] - 0.1
            metrics = {k: v for k, v in metrics.items() if k not in ("val", "test")}
            metrics.update({"status": "pruned", "pruned_at_epoch": 1, "name": cfg["name"],
                            "run_dir": str(run_dir)})
        else:
            run_dir = run_experiment(validate_config(cfg), say=lambda text: None).run_dir
            metrics = read_json(run_dir / "metrics.json")
            value = metrics["val"]["accuracy"]
        previous = run_dir
        metrics["sweep"] = {"name": name, "trial": number, "params": {"train.lr": lr}, "label": label}
        write_json(run_dir / "metrics.json", metrics)
        rel = run_dir.relative_to(folder).as_posix()
        attrs = {"run_dir": rel, "label": label, "status": metrics["status"], "epochs_run": 1,
                 "train_seconds": metrics["train_seconds"]}
        study.add_trial(optuna.trial.create_trial(
            params={"train.lr": lr}, distributions={"train.lr": LR},
            value=None if pruned else value, intermediate_values={1: value}, user_attrs=attrs,
            state=optuna.trial.TrialState.PRUNED if pruned else optuna.trial.TrialState.COMPLETE))
        values.append(None if pruned else value)
        csv_rows.append({"number": number, "state": "PRUNED" if pruned else "COMPLETE",
                         "status": metrics["status"], "value": "" if pruned else value,
                         "train.lr": lr, "label": label, "epochs_run": 1,
                         "train_seconds": metrics["train_seconds"], "run_dir": rel})
    write_trials_csv(folder, csv_rows)
    spec = {"name": name, "base": "configs/quickstart.yaml", "method": "list",
            "metric": "val_accuracy", "direction": "maximize", "trials": None, "parameters": {},
            "experiments": [s[0] for s in STEPS], "pruner": "median", "runs_dir": str(runs_dir),
            "seed": 0}
    (folder / "sweep.yaml").write_text(yaml.safe_dump(spec))
    info = {"name": name, "method": "list", "metric": "val_accuracy", "direction": "maximize",
            "study_name": name, "storage": f"sqlite:///{folder / 'study.db'}",
            "status": "completed", "trials_planned": 3, "created": "2026-12-03T21:00:00",
            "updated": "2026-12-03T21:01:00"}
    write_json(folder / "sweep.json", info)

    # A search with one completed and one failed trial and no run folders: no importance.
    search = _mkdir(runs_dir / "sweeps" / "search")
    small = new_study(search, "search", "minimize")
    small.add_trial(optuna.trial.create_trial(params={"train.lr": 1e-3}, distributions={"train.lr": LR},
                                              value=0.5, user_attrs={"status": "completed"}))
    small.add_trial(optuna.trial.create_trial(params={"train.lr": 1e-2}, distributions={"train.lr": LR},
                                              state=optuna.trial.TrialState.FAIL,
                                              user_attrs={"status": "diverged"}))
    write_json(search / "sweep.json", {"name": "sweeps/search", "method": "optuna",
                                       "metric": "val_loss", "direction": "minimize",
                                       "study_name": "search", "status": "completed",
                                       "storage": "postgresql://lab:***@db.example:5432/lab"})
    (search / "sweep.yaml").write_text(yaml.safe_dump(
        {"name": "sweeps/search", "method": "optuna", "metric": "val_loss", "trials": 20,
         "parameters": {"train.lr": {"log_uniform": [1e-4, 1e-1]}}}))
    return {"series": folder, "values": values, "search": search, "root": root,
            "series_report": write_sweep_report(folder), "search_report": write_sweep_report(search)}


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_header_gives_counts_best_trial_and_storage(sweeps):
    md = sweeps["series_report"].markdown.read_text()
    assert "| trials | 2 completed, 1 pruned, 0 failed (of 3 planned) |" in md
    best = max((0, 1), key=lambda i: (sweeps["values"][i], -i))
    best_value = f"{100 * sweeps['values'][best]:.2f}%"
    assert f"| best | {best_value} at trial {best} ({STEPS[best][0]}): train.lr=" in md
    assert "| metric | val_accuracy (maximize) |" in md
    assert "| storage | sqlite:///" in md
    search_md = sweeps["search_report"].markdown.read_text()
    assert "| storage | postgresql://lab:***@db.example:5432/lab |" in search_md
    assert "1 completed, 0 pruned, 1 failed" in search_md
    assert "| train.lr | log_uniform [0.0001, 0.1] |" in search_md  # search space from sweep.yaml


def test_trials_table_lists_every_trial_with_state_and_status(sweeps):
    md = sweeps["series_report"].markdown.read_text()
    trials = md.split("## Trials")[1].split("\n## ")[0]
    assert re.search(r"\| 2 \| PRUNED \| pruned \| - \| 0\.001 \| 03_lower_lr\.yaml \| 1 \|", trials)
    assert re.search(r"\| 0 \| COMPLETE \| completed \| \d+\.\d\d \| 0\.01 \| 01_base\.yaml \|", trials)
    assert "trial-002/" in trials  # run folder, relative to the sweep folder


def test_importance_plot_present_with_spread_and_absent_with_reason(sweeps):
    series = sweeps["series"]
    assert (series / "param_importances.png").stat().st_size > 5_000
    assert (series / "optimization_history.png").stat().st_size > 5_000
    md = sweeps["series_report"].markdown.read_text()
    assert "![parameter importance](param_importances.png)" in md
    search_md = sweeps["search_report"].markdown.read_text()
    assert ("Parameter importance is absent: it needs at least 2 completed trials (1 so far)."
            in search_md)
    assert not (sweeps["search"] / "param_importances.png").exists()
    assert "![optimisation history](optimization_history.png)" in search_md
    # Two completed trials with the same value of their only parameter: no spread.
    sweep = load_sweep_folder(series)
    for trial in sweep.trials:
        trial.params = {"train.lr": 0.01}
    assert importance_absent_reason(sweep) == ("no parameter took more than one value among "
                                               "the completed trials")


def test_optuna_plots_leave_matplotlib_as_they_found_it(sweeps):
    import matplotlib
    import matplotlib.pyplot as plt

    before = dict(matplotlib.rcParams)
    write_sweep_report(sweeps["series"])
    assert dict(matplotlib.rcParams) == before  # optuna's ggplot style did not leak
    assert plt.get_fignums() == []  # its pyplot figures were closed


def test_series_table_gives_changes_and_deltas_in_points(sweeps):
    table = series_table_markdown(sweeps["series"])
    lines = [line for line in table.splitlines() if re.match(r"\| \d", line)]
    assert len(lines) == 3
    v0, v1, _ = sweeps["values"]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    assert cells[0][:3] == ["1", "0", "01_base.yaml"] and cells[0][3] == "first step"
    assert cells[0][4] == f"{100 * v0:.2f}" and cells[0][5] == "-"
    assert cells[1][3] == "model.layers: +batchnorm; train.lr=0.0001"
    assert cells[1][5] == f"{100 * (v1 - v0):+.2f}"
    assert cells[2][3] == "train.lr=0.001"  # same layers as step 2: only the rate changed
    assert cells[2][4] == "- (pruned at epoch 1)" and cells[2][5] == "-"
    assert "val_accuracy (%) | change (points)" in table
    assert table in sweeps["series_report"].markdown.read_text()


def test_trials_csv_stands_in_when_the_study_cannot_be_opened(sweeps, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(sweeps["series"], copy)
    (copy / "study.db").unlink()
    info = read_json(copy / "sweep.json")
    info["storage"] = "postgresql://lab:***@db.example/lab"
    write_json(copy / "sweep.json", info)
    result = write_sweep_report(copy)
    assert any("trials are read from trials.csv" in note for note in result.notes)
    assert series_table_markdown(copy) == series_table_markdown(sweeps["series"])
    assert "Optuna's plots are absent" in result.markdown.read_text()


def test_leaderboard_of_the_trials_runs_includes_the_pruned_one(sweeps):
    md = sweeps["series_report"].markdown.read_text()
    board = md.split("## Leaderboard")[1]
    assert "sweeps/series/trial-002" in board and "pruned" in board
    assert (sweeps["series"] / "leaderboard.html").is_file()
    assert "No leaderboard:" in sweeps["search_report"].markdown.read_text()


def test_html_is_self_contained(sweeps):
    for key in ("series_report", "search_report"):
        text = sweeps[key].html.read_text()
        assert not re.search(r"""(src|href)\s*=\s*["']?https?:""", text)
        assert "<link" not in text and "<script src" not in text
    text = sweeps["series_report"].html.read_text()
    assert text.count('src="data:image/png;base64,') == 2


def test_compare_and_leaderboard_cli_accept_a_sweep_folder(sweeps, capsys):
    folder = sweeps["series"]
    for argv, wanted in ((["compare", folder, "--format", "md"], "trial-001"),
                         (["compare", folder, "--all", "--format", "md"], "pruned")):
        try:
            main([str(a) for a in argv])
        except SystemExit as exc:
            assert not exc.code, argv
        out = capsys.readouterr().out
        assert wanted in out
        if "--all" not in argv:
            assert "trial-002" not in out  # pruned: left out unless --all
    out_file = sweeps["root"] / "board.html"
    try:
        main(["report", "--leaderboard", str(folder), "--out", str(out_file)])
    except SystemExit as exc:
        assert not exc.code
    assert "trial-000" in out_file.read_text()


@pytest.mark.parametrize("before, after, expected", [
    ({"train": {"lr": 0.01, "seed": 1, "threads": 2}, "name": "a"},
     {"train": {"lr": 0.001, "seed": 2, "threads": 1}, "name": "b"}, ["train.lr=0.001"]),
    ({"model": {"layers": [{"type": "conv2d", "filters": 8}, {"type": "flatten"}]}},
     {"model": {"layers": [{"type": "conv2d", "filters": 8}, {"type": "batchnorm"},
                           {"type": "conv2d", "filters": 8}, {"type": "batchnorm"},
                           {"type": "flatten"}]}},
     ["model.layers: +batchnorm x2, +conv2d(filters=8)"]),
    ({"model": {"layers": [{"type": "conv2d", "filters": 8}]}},
     {"model": {"layers": [{"type": "conv2d", "filters": 16}]}},
     ["model.layers: conv2d(filters=8) -> conv2d(filters=16)"]),
    ({"train": {"early_stopping": {"patience": 5}}}, {"train": {"early_stopping": None}},
     ["train.early_stopping=null", "-train.early_stopping.patience"]),
    ({"data": {"cache": True}}, {"data": {"cache": False}}, []),
])
def test_config_changes(before, after, expected):
    assert config_changes(before, after) == expected


@pytest.mark.parametrize("value, previous, points, expected", [
    (0.7151, 0.6207, True, "+9.44"), (0.6207, 0.7151, True, "-9.44"), (0.5, None, True, "-"),
    (0.25, 0.5, False, "-0.2500"), (float("nan"), 0.5, True, "-")])
def test_format_delta(value, previous, points, expected):
    assert format_delta(value, previous, points) == expected


def test_report_page_opens_in_chromium_without_errors(sweeps, tmp_path):
    from test_html_chromium import chromium, probe

    browser = chromium()
    for page, images in ((sweeps["series_report"].html, "2/2"),
                         (sweeps["search_report"].html, "1/1")):
        attrs = probe(browser, page, tmp_path)
        assert attrs.get("data-probe") == "done", attrs
        assert json.loads(attrs["data-errors"]) == []
        assert attrs["data-images"] == images, page

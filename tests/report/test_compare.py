"""Grouping runs into experiments, mean ± std, Welch's t-test, Pareto front and formats."""

import json
import math
from pathlib import Path

import pytest

from cnnlab.report.compare import (CompareError, compact_specs, compare, differing_keys, flatten,
                                   group_runs, mean_std, to_csv, to_json, to_markdown, welch)
from cnnlab.store.catalog import RunRecord


def record(name, seed, test_acc, *, lr=1e-3, seconds=10.0, status="completed", run_id=None,
           epochs=5):
    config = {"name": name, "runs_dir": "runs", "data": {"name": "digits", "normalization": "rescale"},
              "augment": [{"type": "flip", "mode": "horizontal"}],
              "model": {"name": "sequential", "layers": [{"type": "flatten"}]},
              "train": {"seed": seed, "lr": lr, "batch_size": 32, "epochs": epochs}}
    metrics = {"name": name, "status": status, "epochs_run": epochs, "train_seconds": seconds,
               "params": {"total": 100}, "test": {"accuracy": test_acc, "log_loss": 1 - test_acc},
               "val": {"accuracy": test_acc - 0.01, "log_loss": 1.0}}
    run_dir = Path("/runs") / name / (run_id or f"2026-{seed:04d}")
    return RunRecord(run_dir, config, metrics, {"in_shape": [1, 8, 8]})


@pytest.mark.parametrize("values, expected", [
    ([], (math.nan, math.nan)),
    ([0.5], (0.5, math.nan)),
    ([0.5, 0.7], (0.6, math.sqrt(0.02))),
    ([1.0, 1.0, 1.0], (1.0, 0.0)),
])
def test_mean_and_sample_std(values, expected):
    mean, std = mean_std(values)
    for got, want in zip((mean, std), expected):
        assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want)


@pytest.mark.parametrize("a, b, verdict", [
    ([0.80, 0.81, 0.79, 0.80, 0.82], [0.60, 0.61, 0.59, 0.62, 0.60], "significant"),
    ([0.80, 0.81, 0.79, 0.80, 0.82], [0.80, 0.79, 0.81, 0.82, 0.80], "not significant"),
    ([0.80], [0.60, 0.61, 0.59], "cannot judge"),            # one seed on a side
    ([0.80, 0.81], [0.60], "cannot judge"),
    ([0.7, 0.7], [0.7, 0.7], "not significant"),            # identical, no spread
    ([0.7, 0.7], [0.6, 0.6], "cannot judge"),               # no spread to test against
])
def test_welch_verdicts(a, b, verdict):
    result = welch(a, b)
    assert result.verdict == verdict
    if verdict == "cannot judge":
        assert result.p_value is None and result.reason


def test_welch_matches_scipy():
    from scipy.stats import ttest_ind

    a, b = [0.71, 0.74, 0.69], [0.66, 0.70, 0.64, 0.69]
    assert welch(a, b).p_value == pytest.approx(ttest_ind(a, b, equal_var=False).pvalue)
    assert welch(a, b).delta == pytest.approx(sum(a) / 3 - sum(b) / 4)


def test_runs_group_by_name_and_config_but_not_seed():
    runs = [record("a", 1, 0.8), record("a", 2, 0.82), record("a", 3, 0.9, lr=1e-2),
            record("b", 1, 0.7)]
    rows = group_runs(runs)
    assert [(r.label, r.n) for r in rows] == [("a", 2), ("a#2", 1), ("b", 1)]
    assert differing_keys(rows) == []  # lr differs but has its own column
    rows[2].config["train.epochs"] = 9
    assert differing_keys(rows) == ["train.epochs"]


def test_a_repeated_seed_counts_once_latest_run_wins():
    runs = [record("a", 1, 0.5, run_id="20260101-000000-aaaa"),
            record("a", 1, 0.9, run_id="20260102-000000-bbbb"), record("a", 2, 0.8)]
    (row,) = group_runs(runs)
    assert row.n == 2 and sorted(r.metrics["test"]["accuracy"] for r in row.runs) == [0.8, 0.9]


def test_incomplete_runs_are_left_out_unless_asked():
    runs = [record("a", 1, 0.8), record("a", 2, 0.1, status="diverged")]
    assert group_runs(runs)[0].n == 1
    assert group_runs(runs, include_all=True)[0].n == 2
    with pytest.raises(CompareError, match="--all"):
        compare([record("a", 1, 0.8, status="failed")])


def test_compare_sorts_tests_against_baseline_and_marks_pareto():
    runs = ([record("fast", s, 0.70 + 0.01 * s, seconds=5) for s in range(3)]
            + [record("slow", s, 0.90 + 0.01 * s, seconds=50) for s in range(3)]
            + [record("bad", s, 0.60 + 0.01 * s, seconds=60) for s in range(3)])
    cmp = compare(runs, baseline="fast")
    assert [r.label for r in cmp.rows] == ["slow", "fast", "bad"]
    by = {r.label: r for r in cmp.rows}
    assert by["fast"].significance.verdict == "baseline"
    assert by["slow"].significance.verdict == "significant" and by["slow"].significance.delta > 0
    assert by["slow"].pareto and by["fast"].pareto and not by["bad"].pareto
    ascending = compare(runs, sort="test.loss")
    assert ascending.metric == "test.log_loss" and ascending.rows[0].label == "slow"
    assert not ascending.descending
    with pytest.raises(CompareError, match="not among"):
        compare(runs, baseline="nope")
    with pytest.raises(CompareError, match="No run records"):
        compare(runs, sort="test.nonsense")


def test_formats_carry_the_same_rows():
    runs = [record("a", s, 0.8 + 0.01 * s) for s in range(2)] + [record("b", 0, 0.5, epochs=3)]
    cmp = compare(runs, baseline="a")
    csv_lines = to_csv(cmp).splitlines()
    assert csv_lines[0].startswith("experiment,") and len(csv_lines) == 3
    assert "p_value" in csv_lines[0] and "train.epochs" in csv_lines[0]
    md = to_markdown(cmp)
    assert "| a | 2 |" in md and "0.8050 ± 0.0071" in md and "Welch" in md
    assert "cannot judge" in md  # b has one seed
    data = json.loads(to_json(cmp))
    assert data["rows"][0]["values"]["test.accuracy"] == [0.8, 0.81]
    assert data["rows"][1]["significance"] == "cannot judge"


def test_flatten_keeps_lists_whole_and_layer_lists_read_compactly():
    assert flatten({"a": {"b": [1, {"c": 2}], "d": {}}}) == {"a.b": [1, {"c": 2}], "a.d": {}}
    layers = [{"type": "conv2d", "filters": 8, "kernel": 3, "strides": 1, "padding": "same",
               "activation": "relu", "use_bias": True, "l2": 0.0, "name": None},
              {"type": "maxpool2d", "pool": 2, "strides": None, "padding": "valid", "name": None},
              {"type": "flatten", "name": None}]
    assert compact_specs(layers) == "conv2d(filters=8, padding=same, activation=relu) > maxpool2d > flatten"

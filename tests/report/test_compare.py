"""Grouping runs into experiments, sorting against a baseline, the Pareto front."""

import pytest

from cnnlab.report.compare import (CompareError, compact_specs, compare, differing_keys, flatten,
                                   group_runs)
from run_records import record


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


def test_flatten_keeps_lists_whole_and_layer_lists_read_compactly():
    assert flatten({"a": {"b": [1, {"c": 2}], "d": {}}}) == {"a.b": [1, {"c": 2}], "a.d": {}}
    layers = [{"type": "conv2d", "filters": 8, "kernel": 3, "strides": 1, "padding": "same",
               "activation": "relu", "use_bias": True, "l2": 0.0, "name": None},
              {"type": "maxpool2d", "pool": 2, "strides": None, "padding": "valid", "name": None},
              {"type": "flatten", "name": None}]
    assert compact_specs(layers) == "conv2d(filters=8, padding=same, activation=relu) > maxpool2d > flatten"

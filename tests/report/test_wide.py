"""Report 000's wide table: hand-computed numbers on a small confusion matrix, and its files."""

from __future__ import annotations

import csv

import pytest
import torch

from cnnlab.evaluate.metrics import classification_metrics
from cnnlab.pipeline import write_wide_tables
from cnnlab.report.wide import WIDE_ROWS, wide_block, wide_table

NAMES = ["cat", "dog", "eel"]
# Confusion matrix (rows true, columns predicted), worked by hand:
#          cat dog eel
#   cat  [  3,  1,  0 ]   support 4
#   dog  [  1,  2,  0 ]   support 3
#   eel  [  0,  1,  0 ]   support 1
PAIRS = [(0, 0)] * 3 + [(0, 1), (1, 1), (1, 1), (1, 0), (2, 1)]
EXPECTED = {
    #            Size Recall  Precision Specificity F1
    "cat": (4, 3 / 4, 3 / 4, 3 / 4, 3 / 4),
    "dog": (3, 2 / 3, 2 / 4, 3 / 5, 2 * (2 / 3) * (1 / 2) / (2 / 3 + 1 / 2)),
    "eel": (1, 0.0, 0.0, 1.0, 0.0),  # never predicted: precision 0/0 -> 0
}


def _metrics() -> dict:
    targets = torch.tensor([t for t, _ in PAIRS])
    probs = torch.nn.functional.one_hot(torch.tensor([p for _, p in PAIRS]), 3).float()
    return classification_metrics(probs, targets, NAMES)


def test_wide_table_matches_the_hand_computed_definitions() -> None:
    headers, rows = wide_table(_metrics())
    assert headers == ["metric", "Global", "cat", "dog", "eel"]  # largest class first
    assert [row[0] for row in rows] == list(WIDE_ROWS)
    table = {row[0]: dict(zip(headers[1:], row[1:])) for row in rows}
    for k, label in enumerate(("Size", "Recall", "Precision", "Specificity", "F1 Score")):
        for name in NAMES:
            assert table[label][name] == pytest.approx(EXPECTED[name][k]), (label, name)
    # Global recall and precision are micro-averaged: both are 5 correct / 8 images.
    assert table["Size"]["Global"] == 8
    assert table["Recall"]["Global"] == pytest.approx(5 / 8)
    assert table["Precision"]["Global"] == pytest.approx(5 / 8)
    # Accuracy is the balanced accuracy: mean of the per-class recalls, not 5/8.
    assert table["Accuracy"]["Global"] == pytest.approx((3 / 4 + 2 / 3 + 0) / 3)
    assert table["Specificity"]["Global"] is None and table["F1 Score"]["Global"] is None
    assert all(table["Accuracy"][name] is None for name in NAMES)


def test_block_states_the_definitions_and_formats_like_report_000() -> None:
    block = wide_block(_metrics(), "test")
    assert "micro-averaged" in block.caption and "balanced accuracy" in block.caption
    size, recall = block.rows[0], block.rows[1]
    assert size == ["Size", "8", "4", "3", "1"]
    assert recall[1] == "0.625000"
    assert block.rows[-1][2:] == ["", "", ""]


def test_run_files_hold_every_split(tmp_path) -> None:
    write_wide_tables(tmp_path, {"val": _metrics(), "test": _metrics()})
    rows = list(csv.DictReader((tmp_path / "metrics_wide.csv").open()))
    assert [r["split"] for r in rows] == ["val"] * 6 + ["test"] * 6
    accuracy = next(r for r in rows if r["split"] == "test" and r["metric"] == "Accuracy")
    assert float(accuracy["Global"]) == pytest.approx((3 / 4 + 2 / 3) / 3)
    assert accuracy["cat"] == ""
    md = (tmp_path / "metrics_wide.md").read_text()
    assert "## val" in md and "## test" in md and md.count("| F1 Score |") == 2

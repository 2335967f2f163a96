"""The per-class table and CSV rows list classes largest first, then the averages."""

from __future__ import annotations

import csv
import io

import torch
from rich.console import Console

from cnnlab.evaluate.metrics import classification_metrics
from cnnlab.report.tables import per_class_csv_rows, per_class_table

NAMES = ["ant", "bee", "cat", "dog"]
# Supports 2, 7, 4, 1: sorted by support the order is bee, cat, ant, dog.
SUPPORT = {"ant": 2, "bee": 7, "cat": 4, "dog": 1}
EXPECTED_ORDER = ["bee", "cat", "ant", "dog"]


def _metrics() -> dict:
    targets = torch.tensor([c for c, name in enumerate(NAMES) for _ in range(SUPPORT[name])])
    gen = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(len(targets), len(NAMES), generator=gen), dim=1)
    return classification_metrics(probs, targets, NAMES)


def _render(metrics: dict) -> list[str]:
    console = Console(record=True, width=120)
    console.print(per_class_table(metrics, title="test split"))
    return console.export_text().splitlines()


def test_table_rows_sorted_by_support_then_averages() -> None:
    metrics = _metrics()
    lines = _render(metrics)
    labels = ["bee", "cat", "ant", "dog", "macro avg", "weighted avg", "accuracy"]
    positions = [next(i for i, line in enumerate(lines) if f" {label} " in line)
                 for label in labels]
    assert positions == sorted(positions)

    bee = next(line for line in lines if " bee " in line)
    row = metrics["per_class"]["bee"]
    assert " 7 " in bee
    for metric in ("recall", "precision", "specificity", "f1"):
        assert f"{row[metric]:.4f}" in bee
    accuracy = next(line for line in lines if " accuracy " in line)
    assert f"{metrics['accuracy']:.4f}" in accuracy and f" {metrics['n']} " in accuracy
    assert any("test split" in line for line in lines)
    assert any(f"log loss {metrics['log_loss']:.4f}" in line for line in lines)


def test_header_order_matches_report_000() -> None:
    header = next(line for line in _render(_metrics()) if "support" in line)
    columns = ["class", "support", "recall", "precision", "specificity", "F1"]
    assert [header.index(c) for c in columns] == sorted(header.index(c) for c in columns)


def test_csv_rows_sorted_by_support_and_writable() -> None:
    metrics = _metrics()
    rows = per_class_csv_rows(metrics)
    assert [row["class"] for row in rows] == EXPECTED_ORDER
    assert [row["support"] for row in rows] == [7, 4, 2, 1]
    assert list(rows[0]) == ["class", "support", "precision", "recall", "specificity", "f1"]
    assert rows[0]["f1"] == metrics["per_class"]["bee"]["f1"]

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    assert len(buffer.getvalue().strip().splitlines()) == len(NAMES) + 1

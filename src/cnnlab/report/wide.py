"""Report 000's wide metrics table: one column per class, one row per metric.

The users' Keras-era report 000 laid its scores out transposed from the long per-class table:
columns ``Global`` and then each class (largest first), rows Size / Recall / Precision /
Specificity / F1 Score / Accuracy. This module builds that table from the dict made by
:func:`cnnlab.evaluate.metrics.classification_metrics` (no number is recomputed), as CSV rows
and as Markdown, with the definitions stated under it so a reader need not guess what
``Global`` means.
"""

from __future__ import annotations

from collections.abc import Mapping

from cnnlab.report.document import TableBlock, markdown_table
from cnnlab.report.tables import classes_by_support

__all__ = ["WIDE_DEFINITIONS", "WIDE_ROWS", "wide_block", "wide_csv_rows", "wide_fields",
           "wide_markdown", "wide_table"]

WIDE_ROWS: tuple[str, ...] = ("Size", "Recall", "Precision", "Specificity", "F1 Score",
                              "Accuracy")

WIDE_DEFINITIONS = (
    "Size: number of images of the class (Global: all images of the split). "
    "Recall, Precision, Specificity, F1 Score per class: one-vs-rest, 0 where the ratio is 0/0. "
    "Global Recall and Global Precision are micro-averaged over all images, so both equal the "
    "plain accuracy (correct / all). "
    "Accuracy (Global column only) is the balanced accuracy: the mean of the per-class recalls "
    "over all classes. Empty cells have no meaning for that column, as in report 000 (NaN there)."
)

# (row label, key in per_class); Size is the class support.
_PER_CLASS_KEYS = {"Size": "support", "Recall": "recall", "Precision": "precision",
                   "Specificity": "specificity", "F1 Score": "f1"}


def wide_table(metrics: Mapping) -> tuple[list[str], list[list[float | int | None]]]:
    """``(headers, rows)``: headers ``metric, Global, <classes largest first>``.

    Each row starts with its label from :data:`WIDE_ROWS`; ``None`` marks a cell with no
    meaning (Global Specificity and F1 Score, per-class Accuracy).
    """
    classes = classes_by_support(dict(metrics))
    accuracy = float(metrics["accuracy"])
    global_cells: dict[str, float | int | None] = {
        "Size": int(metrics["n"]),
        "Recall": accuracy,  # micro recall = correct / all
        "Precision": accuracy,  # micro precision = correct / all predictions = the same
        "Specificity": None,
        "F1 Score": None,
        # Balanced accuracy = mean per-class recall over all K classes = the macro recall.
        "Accuracy": float(metrics["macro"]["recall"]),
    }
    rows: list[list[float | int | None]] = []
    for label in WIDE_ROWS:
        key = _PER_CLASS_KEYS.get(label)
        cells = [row[key] if key else None for _, row in classes]
        rows.append([label, global_cells[label], *cells])
    return ["metric", "Global", *(name for name, _ in classes)], rows


def wide_fields(metrics: Mapping) -> list[str]:
    """CSV columns: ``split`` and the table's headers."""
    return ["split", *wide_table(metrics)[0]]


def wide_csv_rows(metrics: Mapping, split: str) -> list[dict]:
    """The table's rows as dicts for :func:`cnnlab.store.write_csv` (unrounded, empty = none)."""
    headers, rows = wide_table(metrics)
    return [{"split": split, **{h: ("" if v is None else v) for h, v in zip(headers, row)}}
            for row in rows]


def wide_block(metrics: Mapping, split: str = "") -> TableBlock:
    """The table as a report block (6 decimals, as report 000 printed), definitions below."""
    headers, rows = wide_table(metrics)
    cells = [[str(row[0]), *(_cell(label=row[0], value=v) for v in row[1:])] for row in rows]
    title = f"Split {split}. " if split else ""
    return TableBlock(headers, cells, numeric=set(range(1, len(headers))),
                      caption=title + WIDE_DEFINITIONS)


def wide_markdown(results: Mapping[str, Mapping]) -> str:
    """metrics_wide.md: one table per evaluated split, each with the definitions."""
    parts = ["# Metrics, wide (report 000 layout)", ""]
    for split, metrics in results.items():
        parts += [f"## {split}", "", markdown_table(wide_block(metrics)), ""]
    return "\n".join(parts).rstrip() + "\n"


def _cell(*, label: object, value: float | int | None) -> str:
    if value is None:
        return ""
    if label == "Size":
        return str(int(value))
    return f"{float(value):.6f}"

"""Per-class metric tables for the terminal (rich) and for CSV files.

Both take the dict made by :func:`cnnlab.evaluate.metrics.classification_metrics` and list
classes largest first, as the users' Keras-era report did, so the classes that carry most of
the accuracy are read first and the rare ones sit together at the bottom.
"""

from __future__ import annotations

from rich.table import Table

__all__ = ["classes_by_support", "per_class_csv_rows", "per_class_table"]

_COLUMNS = ("recall", "precision", "specificity", "f1")


def classes_by_support(metrics: dict) -> list[tuple[str, dict]]:
    # sorted() is stable, so classes of equal support keep their class-index order.
    return sorted(metrics["per_class"].items(), key=lambda item: -int(item[1]["support"]))


def _fmt(value: float) -> str:
    return f"{value:.4f}"


def per_class_table(metrics: dict, title: str = "") -> Table:
    """A rich table of per-class metrics, largest class first, then the averages.

    Columns: class, support, recall, precision, specificity, F1 (4 decimals). After the
    classes come the macro and support-weighted averages and a final accuracy row (its value
    in the F1 column, as in scikit-learn's classification report). The caption gives the
    log loss.
    """
    table = Table(title=title or None, caption=f"log loss {metrics['log_loss']:.4f}")
    table.add_column("class", overflow="fold")
    table.add_column("support", justify="right")
    for header in ("recall", "precision", "specificity", "F1"):
        table.add_column(header, justify="right")

    for name, row in classes_by_support(metrics):
        table.add_row(name, str(row["support"]), *(_fmt(row[col]) for col in _COLUMNS))

    n = str(metrics["n"])
    table.add_section()
    for label, key in (("macro avg", "macro"), ("weighted avg", "weighted")):
        table.add_row(label, n, *(_fmt(metrics[key][col]) for col in _COLUMNS))
    table.add_row("accuracy", n, "", "", "", _fmt(metrics["accuracy"]), style="bold")
    return table


def per_class_csv_rows(metrics: dict) -> list[dict]:
    """One dict per class, largest class first, for :class:`csv.DictWriter`.

    Keys, in column order: ``class``, ``support``, ``precision``, ``recall``,
    ``specificity``, ``f1``. Values are unrounded.
    """
    return [
        {
            "class": name,
            "support": row["support"],
            "precision": row["precision"],
            "recall": row["recall"],
            "specificity": row["specificity"],
            "f1": row["f1"],
        }
        for name, row in classes_by_support(metrics)
    ]

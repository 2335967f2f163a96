"""Rendering a Comparison: terminal table, Markdown, CSV and JSON, with the config columns
that are equal in every row folded into the caption."""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any, Sequence

from rich.table import Table

from cnnlab.report.compare import SUMMARY_METRICS, Comparison, Row, plain_text
from cnnlab.report.significance import TEST_NAME


def fmt_seconds(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m {secs}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes}m"


def fmt_mean_std(mean: float, std: float, digits: int = 4) -> str:
    if not math.isfinite(mean):
        return "-"
    if not math.isfinite(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"




def display_columns(cmp: Comparison) -> list[str]:
    cols = ["experiment", "n", "model", "input", "batch", "augment", "normalize", "epochs", "lr",
            "params", "val acc", "val loss", "test acc", "test loss", "train time"]
    if cmp.metric not in SUMMARY_METRICS:
        cols.append(cmp.metric)
    if cmp.include_all:
        cols.insert(2, "status")
    if cmp.baseline is not None:
        cols.append(f"vs {cmp.baseline.label}")
    return cols + cmp.differing


def display_cells(cmp: Comparison, row: Row) -> list[str]:
    cells = {
        "experiment": row.label, "n": str(row.n), "status": row.statuses, "model": row.model,
        "input": row.input_shape, "batch": plain_text(row.config.get("train.batch_size")),
        "augment": row.augment, "normalize": plain_text(row.config.get("data.normalization")),
        "epochs": row.epochs, "lr": plain_text(row.config.get("train.lr")),
        "params": f"{row.params:,}" if row.params is not None else "-",
        "val acc": fmt_mean_std(row.mean("val.accuracy"), row.std("val.accuracy")),
        "val loss": fmt_mean_std(row.mean("val.log_loss"), row.std("val.log_loss")),
        "test acc": fmt_mean_std(row.mean("test.accuracy"), row.std("test.accuracy")),
        "test loss": fmt_mean_std(row.mean("test.log_loss"), row.std("test.log_loss")),
        "train time": fmt_seconds(row.mean("train_seconds")),
        cmp.metric: fmt_mean_std(row.mean(cmp.metric), row.std(cmp.metric)),
    }
    if cmp.baseline is not None:
        cells[f"vs {cmp.baseline.label}"] = row.significance.text() if row.significance else ""
    for key in cmp.differing:
        cells[key] = plain_text(row.config[key]) if key in row.config else "-"
    return [cells[c] for c in display_columns(cmp)]


def footnote(cmp: Comparison) -> str:
    order = "highest" if cmp.descending else "lowest"
    text = (f"Sorted by {cmp.metric} ({order} first). Values are mean ± sample std over seeds "
            "(n = seeds).")
    if cmp.baseline is not None:
        text += (f" Significance of the difference in {cmp.metric} from {cmp.baseline.label}: "
                 f"{TEST_NAME}; one seed on either side cannot be judged.")
    if cmp.differing:
        text += f" Config keys that differ between rows: {', '.join(cmp.differing)}."
    return text


_CONFIG_COLUMNS = ("model", "input", "batch", "augment", "normalize", "epochs", "lr", "params")


def squeezed(cmp: Comparison) -> tuple[list[str], list[list[str]], str]:
    """Columns and cells with the config columns equal in every row left out, and a caption
    (the footnote, led by what those columns held) so nothing is lost."""
    columns = display_columns(cmp)
    cells = [display_cells(cmp, row) for row in cmp.rows]
    keep = list(range(len(columns)))
    common = []
    if len(cmp.rows) > 1:
        for i, col in enumerate(columns):
            if col in _CONFIG_COLUMNS and len({c[i] for c in cells}) == 1:
                keep.remove(i)
                common.append(f"{col} {cells[0][i]}")
    caption = footnote(cmp)
    if common:
        caption = f"Same in every row: {', '.join(common)}. " + caption
    return [columns[i] for i in keep], [[row[i] for i in keep] for row in cells], caption


def numeric_columns(cmp: Comparison, columns: Sequence[str]) -> set[int]:
    """Positions of the columns holding numbers (right-aligned)."""
    return {i for i, col in enumerate(columns)
            if col in ("n", "params", "val acc", "val loss", "test acc", "test loss",
                       "train time", cmp.metric)}


def to_table(cmp: Comparison, title: str = "experiments") -> Table:
    """A terminal table; config columns equal in every row move to the caption to save width."""
    columns, cells, caption = squeezed(cmp)
    table = Table(title=title, caption=caption, caption_justify="left")
    numeric = numeric_columns(cmp, columns)
    for i, column in enumerate(columns):
        table.add_column(column, overflow="fold", no_wrap=i in numeric,
                         justify="right" if i in numeric else "left")
    for row in cells:
        table.add_row(*row)
    return table


def to_markdown(cmp: Comparison) -> str:
    cols = display_columns(cmp)
    lines = ["| " + " | ".join(_md(c) for c in cols) + " |",
             "| " + " | ".join("---" for _ in cols) + " |"]
    for row in cmp.rows:
        lines.append("| " + " | ".join(_md(c) for c in display_cells(cmp, row)) + " |")
    return "\n".join(lines) + "\n\n" + footnote(cmp) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def record(cmp: Comparison, row: Row) -> dict[str, Any]:
    """A row as plain numbers (CSV and JSON)."""
    out: dict[str, Any] = {
        "experiment": row.label, "name": row.name, "n": row.n, "seeds": row.seeds,
        "status": row.statuses, "model": row.model, "input": row.input_shape,
        "batch": row.config.get("train.batch_size"), "augment": row.augment,
        "normalize": row.config.get("data.normalization"), "epochs": row.epochs,
        "lr": row.config.get("train.lr"), "params": row.params, "pareto": row.pareto,
    }
    for metric in dict.fromkeys((*SUMMARY_METRICS, cmp.metric)):
        mean, std = row.mean(metric), row.std(metric)
        out[f"{metric}.mean"] = mean if math.isfinite(mean) else None
        out[f"{metric}.std"] = std if math.isfinite(std) else None
    if cmp.baseline is not None and row.significance is not None:
        sig = row.significance
        out.update({"baseline": cmp.baseline.label,
                    "delta": sig.delta if math.isfinite(sig.delta) else None,
                    "p_value": sig.p_value, "significance": sig.verdict,
                    "significant": sig.significant, "significance_note": sig.reason})
    for key in cmp.differing:
        value = row.config.get(key)
        out[key] = plain_text(value) if isinstance(value, list) else value
    return out


def to_csv(cmp: Comparison) -> str:
    rows = [record(cmp, row) for row in cmp.rows]
    fields = list(rows[0]) if rows else []
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (json.dumps(v) if isinstance(v, (list, dict)) else v)
                         for k, v in row.items()})
    return buffer.getvalue()


def to_json(cmp: Comparison) -> str:
    rows = []
    for row in cmp.rows:
        item = record(cmp, row)
        item["values"] = {m: row.values[m] for m in row.values}
        item["runs"] = [str(r.run_dir) for r in row.runs]
        rows.append(item)
    return json.dumps({"sort": cmp.metric, "descending": cmp.descending,
                       "baseline": cmp.baseline.label if cmp.baseline else None,
                       "test": TEST_NAME if cmp.baseline else None,
                       "differing": cmp.differing, "rows": rows}, indent=2, default=str) + "\n"

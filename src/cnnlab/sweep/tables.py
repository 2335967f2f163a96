"""The sweep folder's trials table, ``trials.csv`` and ``trials.md``, rewritten after every trial.

One row per Optuna trial: its state, the cnnlab run status, the metric, one column per
parameter (headed by its dotted path), what the trial changes, epochs, time and run folder.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import optuna

from cnnlab.store import write_csv, write_text

FIXED_COLUMNS = ("number", "state", "status", "value")
TAIL_COLUMNS = ("label", "epochs_run", "train_seconds", "run_dir")


def trial_rows(study: optuna.Study) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows (skipped surplus asks left out) and the parameter columns, in first-seen order."""
    rows: list[dict[str, Any]] = []
    params: dict[str, None] = {}
    for trial in study.get_trials(deepcopy=False):
        attrs = trial.user_attrs
        if attrs.get("status") == "skipped":
            continue
        value = trial.value if trial.values else None
        row = {"number": trial.number, "state": trial.state.name,
               "status": attrs.get("status", "running" if trial.state.name == "RUNNING" else ""),
               "value": value if value is None or math.isfinite(value) else None}
        for key, val in trial.params.items():
            params.setdefault(key, None)
            row[key] = val
        row.update({key: attrs.get(key) for key in TAIL_COLUMNS})
        rows.append(row)
    return rows, list(params)


def write_trial_tables(folder: Path, study: optuna.Study) -> None:
    rows, params = trial_rows(study)
    columns = [*FIXED_COLUMNS, *params, *TAIL_COLUMNS]
    write_csv(Path(folder) / "trials.csv", rows, columns)
    write_text(Path(folder) / "trials.md", markdown_table(rows, columns))


def markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c)) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


__all__ = ["trial_rows", "write_trial_tables"]

"""Comparing experiments: one row per experiment, seeds aggregated, and "is this gain real?".

Runs are grouped into one row when they share the experiment name and the whole resolved
config except ``train.seed`` (and settings that cannot change a result: ``runs_dir``,
``description``, ``data.cache``, ``data.cache_dir``, ``train.progress_bar``,
``train.threads``). A ``cnnlab run --seeds N`` group is one such row; so are single runs of the
same config started by hand with other seeds. When a seed was run more than once in a row's
runs, only its latest run counts, so a repeated seed cannot shrink the spread.

Numbers are the mean and the sample standard deviation (ddof 1) over seeds. With a baseline,
each row's per-seed values of the sorted metric are compared with the baseline's by Welch's
two-sided t-test (unequal variances; ``scipy.stats.ttest_ind(equal_var=False)``) at
alpha = 0.05. With one seed on either side there is no spread to test against, and the row
says so instead of guessing.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from cnnlab.errors import CnnlabError
from cnnlab.report.significance import Significance, mean_std, welch
from cnnlab.store.catalog import RunRecord

# Settings that never change a result: left out of grouping and of the differing columns.
IGNORED_KEYS = ("name", "description", "runs_dir", "train.seed", "train.progress_bar",
                "train.threads", "data.cache", "data.cache_dir")
# Config keys already shown as fixed columns.
SHOWN_KEYS = ("train.batch_size", "train.lr", "data.normalization")

METRIC_ALIASES = {"val.loss": "val.log_loss", "test.loss": "test.log_loss",
                  "time": "train_seconds", "train_time": "train_seconds", "params": "params.total"}
# Metrics where lower is better; everything else sorts best (highest) first.
_LOWER_IS_BETTER = ("loss", "log_loss", "train_seconds", "params.total", "seconds")

SUMMARY_METRICS = ("val.accuracy", "val.log_loss", "test.accuracy", "test.log_loss", "train_seconds")


class CompareError(CnnlabError):
    """The runs cannot be compared as asked (unknown metric, baseline not among the rows)."""


# ---------------------------------------------------------------------------------- rows

@dataclass
class Row:
    label: str
    name: str
    runs: list[RunRecord]
    config: dict[str, Any]  # flattened config of the row (shared by its runs)
    values: dict[str, list[float]] = field(default_factory=dict)  # metric -> per-seed values
    significance: Significance | None = None
    pareto: bool = False

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def seeds(self) -> list[int | None]:
        return [r.seed for r in self.runs]

    def mean(self, metric: str) -> float:
        return mean_std(self.values.get(metric, []))[0]

    def std(self, metric: str) -> float:
        return mean_std(self.values.get(metric, []))[1]

    @property
    def statuses(self) -> str:
        found = sorted({r.status for r in self.runs})
        return ", ".join(found)

    # Report 004's tracking columns.
    @property
    def model(self) -> str:
        name = str(self.config.get("model.name", "?"))
        for key in ("arch", "backbone", "variant", "depth"):
            if f"model.{key}" in self.config and self.config[f"model.{key}"] is not None:
                return f"{name}:{self.config[f'model.{key}']}"
        return name

    @property
    def input_shape(self) -> str:
        shape = self.runs[0].data.get("in_shape")
        if shape and len(shape) == 3:
            c, h, w = shape
            return f"{h}x{w}x{c}"
        size = self.config.get("data.image_size")
        return str(size) if size is not None else "?"

    @property
    def augment(self) -> str:
        specs = self.config.get("augment") or []
        names = [str(spec.get("type", "?")) for spec in specs if isinstance(spec, dict)]
        return ", ".join(names) if names else "-"

    @property
    def epochs(self) -> str:
        runs = [r.metrics.get("epochs_run") for r in self.runs if r.metrics.get("epochs_run") is not None]
        if not runs:
            return "-"
        low, high = min(runs), max(runs)
        return str(low) if low == high else f"{low}-{high}"

    @property
    def params(self) -> int | None:
        total = (self.runs[0].metrics.get("params") or {}).get("total")
        return int(total) if total is not None else None


def _index_key(key: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in key.split("."))


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1, "c": [1, 2]}}`` -> ``{"a.b": 1, "a.c": [1, 2]}``.

    Lists stay whole: a list of layer or augmentation specs is one setting (``model.layers``),
    shown in the compact form of :func:`compact_specs`, not one column per layer parameter.
    """
    out: dict[str, Any] = {}
    if isinstance(tree, dict):
        if not tree and prefix:
            out[prefix] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    else:
        out[prefix] = tree
    return out


def _spec_defaults() -> dict[str, dict[str, Any]]:
    """Default parameter values of every layer and augmentation type, by type name."""
    import typing

    from cnnlab.config.schema import AugmentSpec, LayerSpec

    table: dict[str, dict[str, Any]] = {}
    for spec in (LayerSpec, AugmentSpec):
        union = typing.get_args(spec)[0]
        for cls in typing.get_args(union):
            names = typing.get_args(cls.model_fields["type"].annotation)
            defaults = {name: f.get_default(call_default_factory=True)
                        for name, f in cls.model_fields.items() if not f.is_required()}
            for name in names:
                table[name] = defaults
    return table


_DEFAULTS: dict[str, dict[str, Any]] | None = None


def compact_specs(items: list) -> str:
    """``[{"type": "conv2d", "filters": 8, "kernel": 3, ...}, {"type": "flatten"}]`` ->
    ``conv2d(filters=8) > flatten``: each spec with only the values that differ from the
    type's defaults."""
    global _DEFAULTS
    if _DEFAULTS is None:
        _DEFAULTS = _spec_defaults()
    parts = []
    for item in items:
        if not isinstance(item, dict) or "type" not in item:
            parts.append(plain_text(item))
            continue
        defaults = _DEFAULTS.get(str(item["type"]), {})
        args = [f"{k}={plain_text(v)}" for k, v in item.items()
                if k != "type" and not (k in defaults and defaults[k] == v)
                and not (k == "name" and v is None)]
        parts.append(f"{item['type']}({', '.join(args)})" if args else str(item["type"]))
    return " > ".join(parts) if parts else "-"


def metric_value(run: RunRecord, metric: str) -> float | None:
    """A dotted path into metrics.json (``test.accuracy``, ``test.macro.f1``), if numeric."""
    node: Any = run.metrics
    for part in metric.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    if isinstance(node, bool) or not isinstance(node, (int, float)):
        return None
    return float(node) if math.isfinite(float(node)) else None


def resolve_metric(metric: str) -> str:
    return METRIC_ALIASES.get(metric, metric)


def lower_is_better(metric: str) -> bool:
    return metric.endswith(_LOWER_IS_BETTER)


def result_config(config: dict[str, Any]) -> dict[str, Any]:
    """The flattened config less the settings that cannot change a result (IGNORED_KEYS)."""
    return {k: v for k, v in flatten(config).items() if k not in IGNORED_KEYS}


def group_runs(runs: Iterable[RunRecord], *, include_all: bool = False) -> list[Row]:
    """Rows of runs sharing a name and a config (seed aside), latest run per seed."""
    groups: dict[tuple[str, str], list[RunRecord]] = {}
    for run in runs:
        if not include_all and run.status != "completed":
            continue
        key = (run.name, json.dumps(result_config(run.config), sort_keys=True, default=str))
        groups.setdefault(key, []).append(run)
    rows: list[Row] = []
    name_counts: dict[str, int] = {}
    for (name, fingerprint), members in sorted(groups.items(),
                                               key=lambda kv: (kv[0][0], min(r.run_id for r in kv[1]))):
        latest: dict[Any, RunRecord] = {}
        for run in sorted(members, key=lambda r: r.run_id):
            latest[run.seed if run.seed is not None else run.run_id] = run
        kept = sorted(latest.values(), key=lambda r: (r.seed if r.seed is not None else 0, r.run_id))
        name_counts[name] = name_counts.get(name, 0) + 1
        label = name if name_counts[name] == 1 else f"{name}#{name_counts[name]}"
        rows.append(Row(label, name, kept, json.loads(fingerprint)))
    return rows


def differing_keys(rows: Sequence[Row]) -> list[str]:
    """Config keys whose value is not the same in every row (fixed columns aside)."""
    return differing_config_keys([row.config for row in rows], skip=SHOWN_KEYS)


def differing_config_keys(configs: Sequence[dict[str, Any]], skip: Sequence[str] = ()) -> list[str]:
    """Keys of flattened configs whose value (or absence) is not the same in all of them."""
    if len(configs) < 2:
        return []
    keys = sorted({k for config in configs for k in config}, key=_index_key)
    out = []
    for key in keys:
        if key in skip:
            continue
        values = {json.dumps(config[key], sort_keys=True, default=str) if key in config
                  else "<absent>" for config in configs}
        if len(values) > 1:
            out.append(key)
    return out


@dataclass
class Comparison:
    rows: list[Row]
    metric: str
    descending: bool
    differing: list[str]
    baseline: Row | None = None
    include_all: bool = False


def compare(runs: Iterable[RunRecord], *, sort: str | None = None, baseline: str | None = None,
            include_all: bool = False) -> Comparison:
    runs = list(runs)
    rows = group_runs(runs, include_all=include_all)
    if not rows:
        statuses = sorted({r.status for r in runs})
        raise CompareError(f"None of the {len(runs)} run(s) found completed (statuses: "
                           f"{', '.join(statuses) or 'none'}); pass --all to include them.")
    if sort is None:
        sort = "test.accuracy" if any(metric_value(r, "test.accuracy") is not None
                                      for row in rows for r in row.runs) else "val.accuracy"
    metric = resolve_metric(sort)
    for row in rows:
        for name in dict.fromkeys((*SUMMARY_METRICS, metric)):
            row.values[name] = [v for v in (metric_value(r, name) for r in row.runs) if v is not None]
    if not any(row.values[metric] for row in rows):
        raise CompareError(f"No run records the metric {sort!r}; use a dotted path into metrics.json "
                           "such as test.accuracy, val.accuracy, test.log_loss, test.macro.f1, "
                           "train_seconds.")
    descending = not lower_is_better(metric)

    def order(row: Row):
        mean = row.mean(metric)
        missing = not math.isfinite(mean)
        return (missing, -mean if descending and not missing else (mean if not missing else 0.0),
                row.label)

    rows.sort(key=order)
    base_row = None
    if baseline is not None:
        base_row = find_row(rows, baseline)
        for row in rows:
            row.significance = (Significance(0.0, None, "baseline") if row is base_row
                                else welch(row.values[metric], base_row.values[metric]))
    mark_pareto(rows)
    return Comparison(rows, metric, descending, differing_keys(rows), base_row, include_all)


def find_row(rows: Sequence[Row], wanted: str) -> Row:
    """The row named ``wanted``: its label, its experiment name, a run id or a run folder."""
    from pathlib import Path

    wanted_path = Path(wanted)
    exact = [r for r in rows if r.label == wanted]
    if exact:
        return exact[0]
    by_name = [r for r in rows if r.name == wanted]
    if len(by_name) == 1:
        return by_name[0]
    if len(by_name) > 1:
        raise CompareError(f"--baseline {wanted!r} names {len(by_name)} rows with different configs "
                           f"({', '.join(r.label for r in by_name)}); use one of those labels or a "
                           "run folder.")
    for row in rows:
        for run in row.runs:
            if run.run_id == wanted or (wanted_path.exists() and
                                        wanted_path.resolve() == run.run_dir.resolve()):
                return row
    raise CompareError(f"--baseline {wanted!r} is not among the rows compared "
                       f"({', '.join(r.label for r in rows)}); name one of them, or include its runs.")


def mark_pareto(rows: Sequence[Row], accuracy: str | None = None) -> None:
    """Mark the rows no other row beats on both accuracy (higher) and training time (lower)."""
    metric = accuracy or ("test.accuracy" if any(r.values.get("test.accuracy") for r in rows)
                          else "val.accuracy")
    points = [(row, row.mean(metric), row.mean("train_seconds")) for row in rows]
    for row, acc, secs in points:
        if not (math.isfinite(acc) and math.isfinite(secs)):
            row.pareto = False
            continue
        row.pareto = not any(
            math.isfinite(a) and math.isfinite(s) and a >= acc and s <= secs and (a > acc or s < secs)
            for other, a, s in points if other is not row)


def plain_text(value: Any) -> str:
    """A config value as one short cell: layer lists compact, floats without trailing zeros."""
    if value is None:
        return "null"
    if isinstance(value, list) and value and all(isinstance(v, dict) and "type" in v for v in value):
        return compact_specs(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)

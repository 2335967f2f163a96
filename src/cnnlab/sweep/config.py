"""The sweep file's schema and how it is read and checked before any trial runs.

A sweep is a base experiment plus what varies::

    name: quickstart/lr_search            # trials land in runs/<name>/trial-NNN/<run id>/
    base: configs/quickstart.yaml          # relative to the sweep file
    method: optuna                         # list | grid | random | optuna (TPE)
    metric: val_accuracy                   # direction inferred: losses and times minimise
    trials: 20
    parameters:
      train.lr: {log_uniform: [1.0e-4, 1.0e-2]}
      train.batch_size: {choice: [32, 64, 128]}
    pruner: median

Every parameter path and every value a distribution can produce is checked against the
experiment schema when the file is read (:func:`check_sweep`), so a typo or a batch size of 0
fails in a second, not after the first trials have run.
"""

from __future__ import annotations

import difflib
import itertools
import json
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import Field, ValidationError, field_validator, model_validator

from cnnlab.config.base import Strict
from cnnlab.config.load import (allowed_keys, format_validation_error, read_yaml, set_value,
                                validate_config)
from cnnlab.config.schema import ExperimentConfig
from cnnlab.errors import ConfigError

PositiveFloat = Annotated[float, Field(gt=0.0)]
PositiveInt = Annotated[int, Field(gt=0)]
Integer = int  # the `int` field below shadows the builtin inside the class body
NAME_PATTERN = r"^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*$"


# ---------------------------------------------------------------------------- distributions

class Distribution(Strict):
    """Where one parameter's values come from: exactly one of the keys below."""

    uniform: tuple[float, float] | None = Field(None, description="float in [low, high]")
    log_uniform: tuple[PositiveFloat, PositiveFloat] | None = Field(
        None, description="float in [low, high], sampled on a log scale")
    int: tuple[Integer, Integer] | None = Field(None, description="integer in [low, high]")
    log_int: tuple[PositiveInt, PositiveInt] | None = Field(
        None, description="integer in [low, high], sampled on a log scale")
    choice: list[Any] | None = Field(None, min_length=1, description="one of these values")
    values: list[Any] | None = Field(None, min_length=1, description="grid points (grid method)")

    @model_validator(mode="after")
    def _exactly_one(self) -> "Distribution":
        given = [k for k in type(self).model_fields if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of uniform, log_uniform, int, log_int, choice, "
                             f"values (got {', '.join(given) or 'none'})")
        bounds = getattr(self, given[0])
        if given[0] in ("uniform", "log_uniform", "int", "log_int") and bounds[0] > bounds[1]:
            raise ValueError(f"{given[0]}: low {bounds[0]} is above high {bounds[1]}")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in type(self).model_fields if getattr(self, k) is not None)

    @property
    def points(self) -> list[Any] | None:
        """The finite list of values (choice / values), or None for a range."""
        return self.choice if self.choice is not None else self.values

    def extremes(self) -> list[Any]:
        """Values that must all pass the experiment schema: both ends, or every point."""
        return list(self.points) if self.points is not None else list(getattr(self, self.kind))


class PrunerSpec(Strict):
    """Stop unpromising trials early on the per-epoch metric (Optuna's pruners)."""

    name: Literal["none", "median", "hyperband"] = "none"
    startup_trials: Annotated[int, Field(ge=0)] = Field(
        4, description="median: trials that always run to the end before pruning starts")
    warmup_epochs: Annotated[int, Field(ge=0)] = Field(
        1, description="median: epochs of each trial that are never pruned")
    min_epochs: Annotated[int, Field(ge=1)] = Field(1, description="hyperband: min_resource")


class SweepConfig(Strict):
    name: Annotated[str, Field(pattern=NAME_PATTERN)] = Field(
        ..., description="runs land in <runs_dir>/<name>/trial-NNN/<run id>/")
    description: str = ""
    base: Path | None = Field(None, description="experiment every trial starts from (relative "
                              "to the sweep file)")
    method: Literal["list", "grid", "random", "optuna"] = "optuna"
    metric: str = Field("val_accuracy", description="val_accuracy, val_loss, accuracy, loss or a "
                        "dotted metrics.json path (test.accuracy, val.macro.f1, train_seconds)")
    direction: Literal["auto", "maximize", "minimize"] = "auto"
    trials: Annotated[int, Field(ge=1)] | None = Field(
        None, description="random/optuna: trials to run (default 20); list/grid run every point")
    startup_trials: Annotated[int, Field(ge=0)] = Field(
        10, description="optuna: random trials before TPE models the results")
    parameters: dict[str, Distribution] = Field(default_factory=dict)
    experiments: list[Union[str, dict[str, Any]]] = Field(
        default_factory=list, description="list: experiment files (relative to the sweep file) "
        "or mappings of dotted overrides on base, run in order")
    pruner: PrunerSpec = Field(default_factory=PrunerSpec)
    prune_on: Literal["val_accuracy", "val_loss", "accuracy", "loss"] | None = Field(
        None, description="per-epoch metric the pruner watches (default: from metric)")
    seed: int = Field(0, description="sampler seed")
    runs_dir: Path = Field(Path("runs"), description="root of run folders")
    heartbeat_seconds: Annotated[int, Field(ge=1)] = Field(
        10, description="a running trial says it is alive this often; one silent for 4x this "
        "long belongs to a killed worker and is rerun")

    @field_validator("pruner", mode="before")
    @classmethod
    def _pruner_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _method_needs(self) -> "SweepConfig":
        if self.method == "list":
            if not self.experiments:
                raise ValueError("method list needs `experiments:` (files or mappings of overrides)")
            if self.parameters:
                raise ValueError("method list takes `experiments:`, not `parameters:`")
        else:
            if self.experiments:
                raise ValueError(f"`experiments:` is for method list, not {self.method}")
            if not self.parameters:
                raise ValueError(f"method {self.method} needs `parameters:`")
            if self.base is None:
                raise ValueError(f"method {self.method} needs `base:` (the experiment to vary)")
        if self.method == "grid":
            ranged = [k for k, d in self.parameters.items() if d.points is None]
            if ranged:
                raise ValueError(f"grid needs `values:` (or `choice:`) for {', '.join(ranged)}, "
                                 "not a range")
        if self.pruner.name != "none" and self.pruning_monitor is None:
            raise ValueError(f"the pruner needs a per-epoch metric: metric {self.metric!r} has "
                             "none, so set prune_on (val_accuracy, val_loss, accuracy, loss)")
        return self

    # --------------------------------------------------------------- derived settings
    @property
    def resolved_direction(self) -> str:
        if self.direction != "auto":
            return self.direction
        lowered = self.metric.lower()
        smaller = ("loss", "seconds", "error", "params", "time")
        return "minimize" if any(word in lowered for word in smaller) else "maximize"

    @property
    def pruning_monitor(self) -> str | None:
        if self.prune_on is not None:
            return self.prune_on
        return {"val_accuracy": "val_accuracy", "val.accuracy": "val_accuracy",
                "val_loss": "val_loss", "val.log_loss": "val_loss", "val.loss": "val_loss",
                "accuracy": "accuracy", "loss": "loss"}.get(self.metric)

    @property
    def planned_trials(self) -> int:
        if self.method == "list":
            return len(self.experiments)
        if self.method == "grid":
            return len(grid_points(self))
        return self.trials or 20


def grid_points(sweep: SweepConfig) -> list[dict[str, Any]]:
    """Every combination of the parameters' values, first parameter varying slowest."""
    names = list(sweep.parameters)
    product = itertools.product(*(sweep.parameters[n].points for n in names))
    return [dict(zip(names, combo)) for combo in product]


# ------------------------------------------------------------------------------- loading

def load_sweep(path: str | Path, *, trials: int | None = None, runs_dir: Path | None = None,
               experiment_overrides: list[str] = ()) -> "LoadedSweep":
    """Read and check a sweep file; ``experiment_overrides`` (``--set``) apply to every trial."""
    path = Path(path)
    raw = read_yaml(path)
    if trials is not None:
        raw["trials"] = trials
    if runs_dir is not None:
        raw["runs_dir"] = str(runs_dir)
    try:
        sweep = SweepConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path), kind="sweep",
                                                  root=SweepConfig)) from None
    loaded = LoadedSweep(sweep, path, list(experiment_overrides))
    loaded.folder  # a name that escapes runs_dir fails here, before anything is checked or run
    check_sweep(loaded)
    return loaded


class LoadedSweep:
    """A validated sweep plus where it came from: builds each trial's experiment config."""

    def __init__(self, sweep: SweepConfig, path: Path, overrides: list[str]) -> None:
        self.sweep = sweep
        self.path = path
        self.overrides = overrides
        #: The sweep's MLflow parent run, when tracking is on: trials log as its children.
        self.parent_run_id: str | None = None

    @property
    def folder(self) -> Path:
        """``<runs_dir>/<name>``, refused if the name would lead outside runs_dir."""
        from cnnlab.store.paths import safe_run_path

        return safe_run_path(self.sweep.runs_dir, self.sweep.name, what="sweep name")

    def step_raw(self, index: int | None) -> tuple[dict[str, Any], str]:
        """The raw experiment a trial starts from (list sweeps: step ``index``) and its label."""
        from cnnlab.config import apply_override

        label = ""
        if self.sweep.method == "list":
            step = self.sweep.experiments[index]
            if isinstance(step, str):
                raw = read_yaml(self._relative(step))
                label = Path(step).name
            else:
                raw = self._base_raw()
                for key, value in step.items():
                    set_value(raw, key, value, what=f"experiments[{index}] key {key!r}")
                label = ", ".join(f"{k}={_short(v)}" for k, v in step.items()) or "base"
        else:
            raw = self._base_raw()
        for override in self.overrides:
            apply_override(raw, override)
        return raw, label

    def trial_config(self, number: int, params: dict[str, Any], index: int | None = None
                     ) -> tuple[ExperimentConfig, str]:
        """The validated experiment of trial ``number``: its own name and the sweep's runs_dir."""
        raw, label = self.step_raw(index)
        for key, value in params.items():
            set_value(raw, key, value, what=f"parameter {key!r}")
        if params and not label:
            label = ", ".join(f"{k}={_short(v)}" for k, v in params.items())
        raw["name"] = f"{self.sweep.name}/{trial_name(number)}"
        raw["runs_dir"] = str(self.sweep.runs_dir)
        if self.parent_run_id is not None:
            tracking = raw.setdefault("tracking", {}) or {}
            raw["tracking"] = {**tracking, "tags": {
                **(tracking.get("tags") or {}), "mlflow.parentRunId": self.parent_run_id,
                "sweep": self.sweep.name, "trial": str(number)}}
        return validate_config(raw, source=f"{self.path} (trial {number}: {label})"), label

    def _base_raw(self) -> dict[str, Any]:
        return read_yaml(self._relative(str(self.sweep.base))) if self.sweep.base else {}

    def _relative(self, file: str) -> Path:
        candidate = Path(file)
        if candidate.is_absolute() or candidate.exists() and not (self.path.parent / file).exists():
            return candidate
        return self.path.parent / file


def trial_name(number: int) -> str:
    """The folder, under the sweep's folder, that holds trial ``number``'s run."""
    return f"trial-{number:03d}"


def check_sweep(loaded: LoadedSweep) -> None:
    """Fail now (exit 2) on anything that would fail a trial later: unknown parameter paths
    (naming the nearest valid key), values the experiment schema refuses, list steps that do
    not validate."""
    sweep = loaded.sweep
    if sweep.method == "list":
        for index in range(len(sweep.experiments)):
            loaded.trial_config(index, {}, index)
        return
    raw, _ = loaded.step_raw(None)
    for key, dist in sweep.parameters.items():
        _check_path(raw, key, loaded.path)
        for value in dist.extremes():
            try:
                loaded.trial_config(0, {key: value})
            except ConfigError as exc:
                raise ConfigError(f"{loaded.path}: parameter `{key}` can take the value "
                                  f"{_short(value)}, which the experiment refuses: {exc}") from None


def _check_path(raw: dict[str, Any], key: str, sweep_path: Path) -> None:
    """An unknown dotted path fails with the nearest valid key at the level where it breaks."""
    parts = key.split(".")
    node: Any = raw
    schema_loc: list[str] = []
    for depth, part in enumerate(parts):
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"{sweep_path}: parameter `{key}`: {'.'.join(parts[:depth])} "
                                  f"is a list of {len(node)} items; use an index 0-{len(node) - 1}.")
            node = node[int(part)]
            schema_loc.append(part)
            continue
        known = set(node) if isinstance(node, dict) else set()
        allowed = set(allowed_keys(schema_loc)) | known
        if isinstance(node, dict) and len(node) == 1 and not allowed_keys(schema_loc):
            allowed |= set(node)  # a one-key layer mapping: {conv_block: {...}}
        if part not in allowed and allowed:
            nearest = difflib.get_close_matches(part, sorted(allowed), n=1)
            hint = f" Did you mean `{'.'.join(parts[:depth] + nearest)}`?" if nearest else ""
            raise ConfigError(f"{sweep_path}: parameter `{key}` is not a key of the experiment: "
                              f"`{part}` is unknown under `{'.'.join(parts[:depth]) or 'the top level'}`."
                              f"{hint} Allowed there: {', '.join(sorted(allowed))}.")
        node = node.get(part) if isinstance(node, dict) else None
        schema_loc.append(part)


def _short(value: Any) -> str:
    """A value as a label shows it: floats to 4 significant digits, lists compactly."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return json.dumps(value) if not isinstance(value, str) else value


__all__ = ["Distribution", "LoadedSweep", "PrunerSpec", "SweepConfig", "grid_points",
           "load_sweep"]

"""What the pipeline holds while a run is tracked: Lightning loggers and the MLflow tracker.

``open_tracking`` turns the ``tracking:`` section into a :class:`Tracking`; the pipeline passes
``loggers`` to the Trainer (TensorBoard's event files) and calls ``start``, ``on_epoch`` and
``finish`` around training. With tracking off, every call does nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from cnnlab.config import ExperimentConfig
from cnnlab.config.uri import check_tracking_uri
from cnnlab.errors import ConfigError
from cnnlab.track.flatten import flatten_params
from cnnlab.track.mlflow_run import MlflowTracker, default_experiment

Say = Callable[[str], None]


def resolve_uri(setting: str | bool | None) -> str | None:
    """The MLflow URI a ``tracking.mlflow`` value means (true: MLFLOW_TRACKING_URI)."""
    if setting is None or setting is False:
        return None
    if setting is True:
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            raise ConfigError("tracking.mlflow is true, which means the URI in "
                              "MLFLOW_TRACKING_URI, but that variable is not set: set it, or write "
                              "the URI in tracking.mlflow.")
        try:
            return check_tracking_uri(uri)
        except ValueError as exc:
            raise ConfigError(f"MLFLOW_TRACKING_URI: {exc}") from None
    return setting


@dataclass
class Tracking:
    loggers: list = field(default_factory=list)
    mlflow: MlflowTracker | None = None

    def start(self, cfg: Mapping[str, Any], record: Mapping[str, Any]) -> None:
        for logger in self.loggers:
            logger.log_hyperparams(flatten_params(cfg))
        if self.mlflow is not None:
            self.mlflow.start(cfg, record)

    def on_epoch(self, row: Mapping[str, Any]) -> None:
        if self.mlflow is not None:
            self.mlflow.log_epoch(row)

    def finish(self, record: Mapping[str, Any]) -> None:
        for logger in self.loggers:
            logger.finalize("success" if record.get("status") == "completed" else "failed")
        if self.mlflow is not None:
            self.mlflow.finish(record)


def _require(module: str, key: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"tracking.{key} needs the {module} package, which is not installed: "
                          "pip install -e '.[track]' (or set it off).")


def open_tracking(cfg: ExperimentConfig, run_dir: Path, *, say: Say) -> Tracking:
    """The tracking a config asks for (nothing is contacted yet)."""
    spec = cfg.tracking
    tracking = Tracking()
    if spec.tensorboard:
        _require("tensorboard", "tensorboard")
        from lightning.pytorch.loggers import TensorBoardLogger

        # Event files go straight into <run>/tensorboard (no version_N folders): one run, one log.
        tracking.loggers.append(TensorBoardLogger(save_dir=str(run_dir), name="tensorboard",
                                                  version="", default_hp_metric=False))
    uri = resolve_uri(spec.mlflow)
    if uri is not None:
        _require("mlflow", "mlflow")
        tracking.mlflow = MlflowTracker(uri, spec.experiment or default_experiment(cfg.name),
                                        run_dir, cfg.name, say=say)
    return tracking

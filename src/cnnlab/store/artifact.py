"""A finished run folder read back as a working classifier: ``load_run(run_dir) -> SavedRun``.

``config.yaml`` rebuilds the network, ``data.json`` gives the classes, the input shape and the
pixel scaling the weights were trained with, and ``model.safetensors`` fills it. This is all
that ``predict``, ``evaluate``, ``export`` and the report need; the training data is not read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from safetensors.torch import load_file

from cnnlab.config import ExperimentConfig, validate_config
from cnnlab.config.load import read_yaml
from cnnlab.errors import RunError
from cnnlab.models import build_model
from cnnlab.models.backbones import skip_pretrained_weights
from cnnlab.store.run import open_run, read_json, read_run_json
from cnnlab.train import Classifier


@dataclass
class SavedRun:
    run_dir: Path
    cfg: ExperimentConfig
    classes: list[str]
    in_shape: tuple[int, int, int]  # (C, H, W)
    classifier: Classifier  # eval mode, on the CPU

    @property
    def image_size(self) -> tuple[int, int]:
        return self.in_shape[1], self.in_shape[2]

    @property
    def channels(self) -> int:
        return self.in_shape[0]


def load_run(run_dir: Path) -> SavedRun:
    """The run's classifier with its saved weights, or a RunError saying what is missing."""
    run_dir = open_run(run_dir)
    for name, why in (("data.json", "the classes and input shape"),
                      ("model.safetensors", "the trained weights")):
        if not (run_dir / name).is_file():
            status = _status(run_dir)
            raise RunError(f"{run_dir} has no {name} ({why}); the run's status is {status}: only a "
                           "run that finished training has weights to use.")
    cfg = validate_config(read_yaml(run_dir / "config.yaml"), source=str(run_dir / "config.yaml"))
    info = read_run_json(run_dir / "data.json")
    try:
        classes = [str(c) for c in info["classes"]]
        in_shape = tuple(int(v) for v in info["in_shape"])
    except (KeyError, TypeError, ValueError) as exc:
        raise RunError(f"{run_dir}/data.json lacks a usable {exc} entry (classes and in_shape "
                       "are needed); the run folder is damaged.") from None
    channels = in_shape[0]
    mean = info.get("mean") or [0.0] * channels
    std = info.get("std") or [1.0] * channels
    # The saved weights replace any pretrained ones: do not look for (or download) those.
    with skip_pretrained_weights():
        net = build_model(cfg.model, in_shape, len(classes))
    # A backbone scales its input as its weights expect, whatever the data's statistics were.
    mean, std = getattr(net, "input_normalization", None) or (mean, std)
    classifier = Classifier(net, mean, std)
    try:
        state = load_file(str(run_dir / "model.safetensors"))
    except Exception as exc:  # safetensors raises its own error type for a damaged file
        raise RunError(f"{run_dir}/model.safetensors cannot be read ({type(exc).__name__}: "
                       f"{exc}); the weights file is damaged.") from None
    try:
        classifier.load_state_dict(state)
    except RuntimeError as exc:
        raise RunError(f"{run_dir}/model.safetensors does not fit the network that config.yaml "
                       f"describes ({str(exc).splitlines()[0]}); was the folder edited?") from None
    classifier.eval()
    return SavedRun(run_dir, cfg, classes, in_shape, classifier)  # type: ignore[arg-type]


def _status(run_dir: Path) -> str:
    path = run_dir / "metrics.json"
    if not path.is_file():
        return "unknown (no metrics.json)"
    try:
        return str(read_json(path).get("status", "unknown"))
    except (OSError, ValueError):
        return "unknown (unreadable metrics.json)"

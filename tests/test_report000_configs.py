"""Report 000's four experiments run from configs/ unchanged, on a class-balanced CIFAR-10 subset."""

import json
from pathlib import Path

import pytest

from cnnlab.config import load_config
from cnnlab.pipeline import run_experiment

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs" / "report000").glob("*.yaml"))


def test_all_four_experiments_are_there():
    assert [p.stem for p in CONFIGS] == ["1_basic_cnn", "2_data_augmentation",
                                         "3_classification_layer", "4_rescaling"]


@pytest.mark.slow
@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_one_epoch_on_a_cifar10_subset(path, shared_cifar, tmp_path):
    cfg = load_config(path, [f"data.root={shared_cifar}", "data.max_per_class=20",
                             "train.epochs=1", "train.progress_bar=false",
                             f"runs_dir={tmp_path / 'runs'}"])
    assert cfg.data.image_size == 64 and cfg.data.name == "imagefolder"
    outcome = run_experiment(cfg, say=lambda text: None)
    metrics = json.loads((outcome.run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["epochs_run"] == 1
    assert sum(c["support"] for c in metrics["test"]["per_class"].values()) == 20
    assert len(metrics["test"]["per_class"]) == 10

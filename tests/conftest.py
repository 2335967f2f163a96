"""Shared fixtures: tiny image folders made on the fly, the shared CIFAR-10 copy, a CLI runner."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED_CIFAR = REPO.parent / "shared" / "datasets" / "cifar10" / "train"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    # Tests never read or fill the user's ~/.cache/cnnlab.
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path_factory.getbasetemp() / "cnnlab-cache"))
    torch.set_num_threads(max(1, os.cpu_count() or 1))


def make_image_folder(root: Path, classes=("cat", "dog", "frog"), per_class: int = 12,
                      size: int = 16, suffix: str = ".png", seed: int = 0) -> Path:
    """Class folders of small images whose colour depends on the class (learnable)."""
    rng = np.random.default_rng(seed)
    for index, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            base = np.zeros((size, size, 3), dtype=np.float64)
            base[..., index % 3] = 200.0
            pixels = np.clip(base + rng.normal(0, 30, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i:03d}{suffix}")
    return root


@pytest.fixture
def image_folder(tmp_path) -> Path:
    return make_image_folder(tmp_path / "images")


@pytest.fixture
def shared_cifar() -> Path:
    if not SHARED_CIFAR.is_dir():
        pytest.skip(f"../shared/datasets/cifar10/train is absent ({SHARED_CIFAR}); "
                    "it is only on the team's machines")
    return SHARED_CIFAR


def cli(argv, capsys):
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    from cnnlab.cli import main

    try:
        main([str(arg) for arg in argv])
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def tiny_experiment(tmp_path: Path, data: dict, **sections) -> dict:
    """A config dict that trains for one short epoch on CPU without a progress bar."""
    cfg = {
        "name": "tests/tiny",
        "data": {"cache": False, **data},
        "model": {"layers": [{"conv2d": {"filters": 4, "padding": "same", "activation": "relu"}},
                             {"maxpool2d": {"pool": 2}}, {"flatten": {}}]},
        "train": {"epochs": 1, "batch_size": 16, "progress_bar": False, "threads": 2},
        "runs_dir": str(tmp_path / "runs"),
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg

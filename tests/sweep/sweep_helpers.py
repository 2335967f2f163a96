"""Tiny sweeps on the bundled digits: a base experiment file and a sweep file in a folder."""

from __future__ import annotations

from pathlib import Path

import yaml

from conftest import tiny_experiment


def write_sweep(tmp_path: Path, sweep: dict, *, epochs: int = 1, name: str = "sw/test") -> Path:
    """base.yaml (a 1-epoch digits net) and sweep.yaml beside it; returns the sweep file."""
    base = tiny_experiment(tmp_path, {"name": "digits", "val_split": 0.2, "test_split": 0.2},
                           train={"epochs": epochs, "batch_size": 64, "threads": 1})
    base["name"] = "base/tiny"
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    doc = {"name": name, "base": "base.yaml", "runs_dir": str(tmp_path / "runs"), **sweep}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path

"""Report 001's Kaggle flow end to end through the CLI: train on a CSV of labels and an image
folder, predict an unlabelled test folder, and write submission.csv into the run folder."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

from conftest import REPO, cli

RECIPE = REPO / "recipes" / "report001" / "kaggle.yaml"


def kaggle_layout(root: Path, classes: int = 5, per_class: int = 6, tests: int = 7) -> Path:
    """train.csv (`id,label`), train/<id>.png and test/<id>.png: 28x28 grayscale whose
    brightness depends on the label."""
    rng = np.random.default_rng(0)
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    rows = []
    for i in range(classes * per_class):
        label = i % classes
        pixels = np.clip(rng.normal(40 + 40 * label, 10, (28, 28)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / "train" / f"{i}.png")
        rows.append((i, label))
    with (root / "train.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([("id", "label"), *rows])
    for i in range(tests):
        Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(
            root / "test" / f"{1000 + i}.png")
    return root


def test_the_kaggle_recipe_trains_predicts_and_writes_a_submission(tmp_path, capsys):
    data = kaggle_layout(tmp_path / "kaggle")
    code, out, err = cli(["run", RECIPE,
                          "--set", f"data.root={data / 'train.csv'}",
                          "--set", f"data.image_dir={data / 'train'}",
                          "--set", f"predict.source={data / 'test'}",
                          "--set", "train.epochs=1", "--set", "train.batch_size=16",
                          "--set", "train.progress_bar=false", "--set", "train.threads=1",
                          "--set", f"runs_dir={tmp_path / 'runs'}"], capsys)
    assert code == 0, err
    run_dir = next((tmp_path / "runs").rglob("metrics.json")).parent
    assert run_dir.is_relative_to(tmp_path / "runs" / "report001" / "kaggle")
    with (run_dir / "submission.csv").open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["id", "label"]
    assert sorted(r[0] for r in rows[1:]) == [str(1000 + i) for i in range(7)]
    assert {r[1] for r in rows[1:]} <= {"0", "1", "2", "3", "4"}  # the CSV's labels, as written
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed"
    sub = metrics["submission"]
    assert sub["file"] == "submission.csv" and sub["rows"] == 7
    assert sub["seconds"] > 0 and sub["images_per_s"] > 0
    assert "submission:" in out and "submission.csv" in out
    # Everything the recipe wrote is inside the run folder (and the inputs are untouched).
    assert sorted(p.name for p in data.iterdir()) == ["test", "train", "train.csv"]
    info = json.loads((run_dir / "data.json").read_text())
    assert info["classes"] == ["0", "1", "2", "3", "4"] and info["sizes"] == {"train": 30}

"""data.on_bad_image: error (the default) stops at an unreadable image; skip leaves it out,
counts it and lists it in data.json and the run summary."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from cnnlab.config.load import validate_config
from cnnlab.data import build_data
from cnnlab.errors import DataError
from conftest import cli, make_image_folder, tiny_experiment


def damaged_folder(root: Path) -> tuple[Path, list[str]]:
    """Two classes of 8 images plus a zero-byte, a corrupt and a truncated PNG."""
    folder = make_image_folder(root, classes=("cat", "dog"), per_class=8, size=8)
    good = (folder / "dog" / "000.png").read_bytes()
    bad = {"cat/zero.png": b"", "dog/noise.png": os.urandom(200),
           "dog/half.png": good[: len(good) // 2]}
    for name, data in bad.items():
        (folder / name).write_bytes(data)
    return folder, sorted(bad)


def data_cfg(root: Path, **data):
    return validate_config({"name": "x", "data": {"name": "imagefolder", "root": str(root),
                                                  "val_split": 0.25, "test_split": 0.0,
                                                  **data}}).data


def test_error_is_the_default(tmp_path):
    folder, _ = damaged_folder(tmp_path / "images")
    with pytest.raises(DataError, match="Cannot read the image"):
        build_data(data_cfg(folder))


@pytest.mark.parametrize("cache", ["memory", "disk"])
def test_skip_leaves_bad_files_out_and_lists_them(tmp_path, cache):
    folder, bad = damaged_folder(tmp_path / "images")
    bundle = build_data(data_cfg(folder, on_bad_image="skip", cache=cache))
    assert sum(len(s) for s in bundle.splits().values()) == 16
    skipped = bundle.info["skipped_images"]
    assert skipped["count"] == 3
    assert sorted(Path(e["file"]).relative_to(folder).as_posix() for e in skipped["files"]) == bad
    assert all(e["reason"] for e in skipped["files"])
    assert bundle.train.class_counts(2) == [6, 6] and bundle.val.class_counts(2) == [2, 2]
    # The decoded-image cache remembers what it skipped: a second build reports the same.
    again = build_data(data_cfg(folder, on_bad_image="skip", cache=cache))
    assert again.info["skipped_images"]["count"] == 3


def test_skip_on_a_csv_source(tmp_path):
    folder, _ = damaged_folder(tmp_path / "images")
    rows = [f"{c}/{p.name},{c}" for c in ("cat", "dog") for p in sorted((folder / c).iterdir())]
    (tmp_path / "train.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    cfg = validate_config({"name": "x", "data": {
        "name": "csv", "root": str(tmp_path / "train.csv"), "image_dir": str(folder),
        "on_bad_image": "skip", "val_split": 0.25, "test_split": 0.0}}).data
    bundle = build_data(cfg)
    assert bundle.info["skipped_images"]["count"] == 3 and len(bundle.train) == 12


def test_the_run_records_and_reports_skipped_files(tmp_path, capsys):
    folder, _ = damaged_folder(tmp_path / "images")
    cfg = tiny_experiment(tmp_path, {"name": "imagefolder", "root": str(folder),
                                     "on_bad_image": "skip", "val_split": 0.25,
                                     "test_split": 0.0})
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(cfg))
    code, out, err = cli(["run", tmp_path / "exp.yaml"], capsys)
    assert code == 0, err
    run_dir = next((tmp_path / "runs").rglob("data.json")).parent
    info = json.loads((run_dir / "data.json").read_text())
    assert info["skipped_images"]["count"] == 3
    assert json.loads((run_dir / "metrics.json").read_text())["skipped_images"] == 3
    assert "skipped 3 unreadable image(s)" in out and "zero.png" in out
    assert "3 unreadable image(s) skipped" in out  # the closing summary line

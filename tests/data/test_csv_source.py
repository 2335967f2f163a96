"""The csv source: a CSV of image paths or ids with labels, plus a folder of images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.config.load import validate_config
from cnnlab.data import build_data
from cnnlab.data.csvfiles import list_files
from cnnlab.data.sources import check_source_keys
from cnnlab.errors import ConfigError, DataError


def images(folder: Path, names: list[str], size: int = 6) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        Image.fromarray(np.full((size, size, 3), 10 * i, np.uint8)).save(folder / name)
    return folder


def data_cfg(csv_path: Path, **data):
    return validate_config({"name": "x", "data": {"name": "csv", "root": str(csv_path),
                                                  "decode_cache": False, **data}}).data


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_ids_without_extension_numeric_labels_sorted_as_numbers(tmp_path):
    folder = images(tmp_path / "train", [f"{i}.png" for i in range(12)])
    lines = "\n".join(f"{i},{[2, 10, 9][i % 3]}" for i in range(12))
    path = write_csv(tmp_path / "train.csv", f"id,label\n{lines}\n")
    listing = list_files(data_cfg(path, image_dir=str(folder)))
    assert listing.classes == ["2", "9", "10"]  # numerically, not "10" < "2"
    files, labels = listing.parts["train"]
    assert [f.name for f in files] == [f"{i}.png" for i in range(12)]
    assert labels.tolist() == [0, 2, 1] * 4


def test_named_columns_paths_with_extension_and_the_csvs_folder_as_default(tmp_path):
    images(tmp_path / "imgs", ["a.png", "b.png", "c.png", "d.png"])
    path = write_csv(tmp_path / "labels.csv", "split,kind,file\nx,dog,imgs/a.png\nx,cat,imgs/b.png\n"
                     "x,dog,imgs/c.png\nx,cat,imgs/d.png\n")
    cfg = data_cfg(path, path_column="file", label_column="kind")
    listing = list_files(cfg)
    assert listing.classes == ["cat", "dog"]
    assert listing.parts["train"][1].tolist() == [1, 0, 1, 0]
    # data.classes sets the list and its order.
    assert list_files(data_cfg(path, path_column="file", label_column="kind",
                               classes=["dog", "cat"])).parts["train"][1].tolist() == [0, 1, 0, 1]


def test_no_header_positions_and_a_suffix(tmp_path):
    folder = images(tmp_path / "train", ["p1.jpg.png", "p2.jpg.png"])
    path = write_csv(tmp_path / "t.csv", "b,p1.jpg\na,p2.jpg\n")
    listing = list_files(data_cfg(path, image_dir=str(folder), csv_header=False, path_column=1,
                                  label_column=0, image_suffix=".png"))
    assert [f.name for f in listing.parts["train"][0]] == ["p1.jpg.png", "p2.jpg.png"]
    assert listing.classes == ["a", "b"]


def test_build_data_decodes_and_splits(tmp_path):
    folder = images(tmp_path / "train", [f"{i}.png" for i in range(20)])
    path = write_csv(tmp_path / "train.csv", "id,label\n" + "".join(
        f"{i},{'ab'[i % 2]}\n" for i in range(20)))
    bundle = build_data(data_cfg(path, image_dir=str(folder), val_split=0.2, test_split=0.0,
                                 max_per_class=8))
    assert bundle.classes == ["a", "b"] and bundle.in_shape == (3, 6, 6)
    assert {k: len(v) for k, v in bundle.splits().items()} == {"train": 12, "val": 4}
    assert bundle.train.images.dtype == torch.uint8


def test_csv_keys_are_refused_for_other_sources():
    cfg = validate_config({"name": "x", "data": {"name": "imagefolder", "label_column": "y"}}).data
    with pytest.raises(ConfigError, match="`data.label_column` is not used by `imagefolder`"):
        check_source_keys(cfg)


@pytest.mark.parametrize("text, data, words", [
    ("id,label\n0,a\n1,b\n7,a\n", {}, ("line 4", "'7'", "does not exist")),
    ("id,label\n0,a\n1,zebra\n", {"classes": ["a", "b"]}, ("line 3", "'zebra'", "class list")),
    ("", {}, ("is empty",)),
    ("id,label\n\n", {}, ("lists no images", "only a header")),
    ("id,label\n0,a\n", {"label_column": "class"}, ("data.label_column", "no column 'class'",
                                                    "id, label")),
    ("id,label\n0,a\n1\n", {}, ("line 3", "1 column(s)")),
    ("id,label\n0,\n", {}, ("line 2", "label column is empty")),
    ("0,a\n", {"csv_header": False, "path_column": "id"}, ("data.path_column", "csv_header")),
])
def test_bad_csv_names_the_file_and_line(tmp_path, text, data, words):
    folder = images(tmp_path / "train", ["0.png", "1.png"])
    path = write_csv(tmp_path / "train.csv", text)
    with pytest.raises(DataError) as info:
        list_files(data_cfg(path, image_dir=str(folder), **data))
    message = str(info.value)
    assert "train.csv" in message or "data." in message
    for word in words:
        assert word in message, (word, message)


def test_missing_csv_and_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        list_files(data_cfg(tmp_path / "nope.csv"))
    path = write_csv(tmp_path / "t.csv", "id,label\n0,a\n")
    with pytest.raises(DataError, match="data.image_dir"):
        list_files(data_cfg(path, image_dir=str(tmp_path / "nothing")))

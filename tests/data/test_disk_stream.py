"""data.cache: disk for TFRecord files and WebDataset shards: the index's samples decoded once into
the disk cache's map, keyed by the shards' content and the preprocessing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from cnnlab.config.load import validate_config
from cnnlab.data import build_data
from cnnlab.data import disk_stream
from cnnlab.errors import DataError
from conftest import REPO, cli
from shard_fixtures import mixed_sizes_tar, packed

PATTERN = {"tfrecord": "*.tfrecord", "webdataset": "*.tar"}


def data_cfg(fmt: str, files, cache_dir: Path, **data):
    return validate_config({"name": "x", "data": {
        "name": fmt, "files": files, "cache": "disk", "cache_dir": str(cache_dir),
        "val_split": 0.25, "test_split": 0.2, "workers": 0, **data}}).data


def entries(cache_dir: Path) -> list[str]:
    return sorted(p.name for p in (cache_dir / "memmap").iterdir())


@pytest.mark.parametrize("fmt", ["tfrecord", "webdataset"])
def test_disk_gives_the_splits_labels_and_pixels_of_memory(tmp_path, fmt) -> None:
    out = packed(tmp_path, fmt, per_class=10, shard_bytes=3000)
    files = str(out / PATTERN[fmt])
    on_disk = build_data(data_cfg(fmt, files, tmp_path / "cache"))
    in_memory = build_data(data_cfg(fmt, files, tmp_path / "cache", cache="memory"))
    assert on_disk.classes == in_memory.classes == ["cat", "dog", "frog"]
    assert {k: len(v) for k, v in on_disk.splits().items()} == {"train": 16, "val": 8, "test": 6}
    for name, split in in_memory.splits().items():
        assert torch.equal(on_disk.splits()[name].images, split.images), name
        assert torch.equal(on_disk.splits()[name].labels, split.labels), name
    assert on_disk.mean == pytest.approx(in_memory.mean)
    assert on_disk.info["cache"] == "disk"
    # One map, split by slices: val starts where train ends.
    per_image = 3 * 16 * 16
    assert on_disk.val.images.data_ptr() - on_disk.train.images.data_ptr() == 16 * per_image
    entry = Path(on_disk.info["cache_entry"])
    assert (entry / "images.u8").stat().st_size == 30 * per_image
    assert json.loads((entry / "meta.json").read_text())["shape"] == [30, 3, 16, 16]


def test_separate_val_files_and_a_class_subset_match_memory(tmp_path) -> None:
    out = packed(tmp_path, "tfrecord", per_class=8, val_split=0.25)
    files = {"train": str(out / "train-*.tfrecord"), "val": str(out / "val-*.tfrecord")}
    common = {"classes": ["frog", "cat"], "max_per_class": 5, "image_size": 8}
    on_disk = build_data(data_cfg("tfrecord", files, tmp_path / "cache", **common))
    in_memory = build_data(data_cfg("tfrecord", files, tmp_path / "cache", cache="memory",
                                    **common))
    assert on_disk.classes == ["frog", "cat"] and on_disk.info["val_from"] == "source"
    for name, split in in_memory.splits().items():
        assert torch.equal(on_disk.splits()[name].images, split.images), name
        assert torch.equal(on_disk.splits()[name].labels, split.labels), name
    assert on_disk.in_shape == (3, 8, 8)


def test_the_entry_is_reused_and_a_touched_shard_or_other_preprocessing_is_a_new_one(
        tmp_path, monkeypatch) -> None:
    out = packed(tmp_path, "webdataset", per_class=6, shard_bytes=3000)
    files, cache = str(out / "*.tar"), tmp_path / "cache"
    first = build_data(data_cfg("webdataset", files, cache))
    assert len(entries(cache)) == 1

    class NoDecoding:
        def __init__(self, *args, **kwargs):
            raise AssertionError("decoded again although the entry exists")

    monkeypatch.setattr(disk_stream, "StreamSplit", NoDecoding)
    again = build_data(data_cfg("webdataset", files, cache))
    assert torch.equal(again.train.images, first.train.images)
    monkeypatch.undo()

    shard = sorted(out.glob("*.tar"))[-1]
    stat = shard.stat()
    os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # same bytes, new mtime
    build_data(data_cfg("webdataset", files, cache))
    assert len(entries(cache)) == 2
    build_data(data_cfg("webdataset", files, cache, image_size=8))
    build_data(data_cfg("webdataset", files, cache, channels=1))
    build_data(data_cfg("webdataset", files, cache, split_seed=3))  # other samples per split
    assert len(entries(cache)) == 5
    assert not [p for p in (cache / "memmap").iterdir() if p.name.startswith(".")]


def test_mixed_sizes_without_image_size_fail_and_leave_no_entry(tmp_path) -> None:
    mixed_sizes_tar(tmp_path / "m.tar", count=6)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=r"m\.tar \(sample 'k5'\) is \(12, 12\) pixels.*"
                       "set data.image_size"):
        build_data(data_cfg("webdataset", str(tmp_path / "m.tar"), cache, val_split=0.0,
                            test_split=0.0))
    assert entries(cache) == []


def test_a_tfrecord_run_with_cache_disk_through_the_cli(tmp_path, capsys) -> None:
    out = packed(tmp_path, "tfrecord", per_class=8, val_split=0.25)
    code, _, err = cli([
        "run", REPO / "recipes" / "report000" / "1_basic_cnn_tfrecord.yaml",
        "--set", f"data.files={{train: '{out}/train-*.tfrecord', val: '{out}/val-*.tfrecord'}}",
        "--set", "data.cache=disk", "--set", f"data.cache_dir={tmp_path / 'cache'}",
        "--set", "data.image_size=16", "--set", "data.test_split=0.25", "--set", "data.workers=0",
        "--set", "train.epochs=1", "--set", "train.batch_size=8",
        "--set", "train.progress_bar=false", "--runs-dir", tmp_path / "runs"], capsys)
    assert code == 0, err
    run = next((tmp_path / "runs" / "report000" / "1_basic_cnn_tfrecord").iterdir())
    data = json.loads((run / "data.json").read_text())
    assert data["cache"] == "disk" and Path(data["cache_entry"]).parent == tmp_path / "cache" / "memmap"
    assert json.loads((run / "metrics.json").read_text())["status"] == "completed"
    assert len(entries(tmp_path / "cache")) == 1


def test_shards_are_decoded_lazily_a_bounded_chunk_at_a_time(tmp_path, monkeypatch) -> None:
    import types

    import numpy as np

    from cnnlab.data.decode import Skipped

    monkeypatch.setattr(disk_stream, "BATCH", 4)
    out = packed(tmp_path, "webdataset", per_class=5, shard_bytes=3000)
    source = disk_stream.indexed(data_cfg("webdataset", str(out / "*.tar"), tmp_path / "cache"))
    n = len(source.labels["train"])
    todo = source.decoding([("train", np.arange(n - 3)), ("train", np.arange(n - 3, n))])
    chunks = todo.chunks(todo.shape(), Skipped())
    assert isinstance(chunks, types.GeneratorType)  # nothing decoded before it is asked for
    sizes, positions = [], []
    for pos, images in chunks:
        assert images.shape[1:] == (3, 16, 16) and len(pos) == len(images)
        sizes.append(len(images))
        positions.extend(pos.tolist())
    assert max(sizes) == 4 and todo.count == n == 15
    assert positions == list(range(n))  # both parts, in order, each position once

"""cnnlab.data.pack: any source to shards, read back by the matching reader."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from cnnlab.config.load import validate_config
from cnnlab.data import build_data
from cnnlab.data.pack import pack, parse_size
from cnnlab.errors import DataError


def test_sizes_read_as_users_write_them() -> None:
    assert parse_size("256MB") == 256 * 10**6
    assert parse_size("64MiB") == 64 * 2**20
    assert parse_size("1.5 GB") == 1_500_000_000
    assert parse_size("4096") == 4096
    for bad in ("", "0MB", "-1MB", "12 parsecs"):
        with pytest.raises(DataError, match="is not a size"):
            parse_size(bad)


@pytest.mark.parametrize("fmt", ["webdataset", "tfrecord"])
def test_an_array_source_packs_and_reads_back(tmp_path, fmt) -> None:
    cfg = validate_config({"name": "x", "data": {"name": "digits", "max_per_class": 4,
                                                 "channels": 1, "image_size": 12}}).data
    record = pack(cfg, tmp_path / "out", fmt, val_split=0.25, shard_bytes=2000)
    assert record["image_shape"] == [1, 12, 12]
    assert {p: v["samples"] for p, v in record["parts"].items()} == {"train": 30, "val": 10}
    assert json.loads((tmp_path / "out" / "pack.json").read_text()) == record
    back = build_data(validate_config({"name": "x", "data": {
        **record["data"], "channels": 1, "test_split": 0.0, "cache": "none", "workers": 0}}).data)
    assert back.classes == [str(d) for d in range(10)]
    assert back.in_shape == (1, 12, 12)
    assert Counter(back.val.labels.tolist()) == {d: 1 for d in range(10)}
    assert back.info["val_from"] == "source"


def test_records_are_written_in_a_seeded_random_order(tmp_path) -> None:
    cfg = validate_config({"name": "x", "data": {"name": "digits", "max_per_class": 3}}).data
    labels = []
    for seed in (0, 0, 1):
        out = tmp_path / f"s{seed}-{len(labels)}"
        pack(cfg, out, "webdataset", seed=seed)
        back = build_data(validate_config({"name": "x", "data": {
            "name": "webdataset", "files": str(out / "*.tar"), "val_split": 0.0,
            "test_split": 0.0, "cache": "none", "workers": 0}}).data)
        labels.append(back.train.labels.tolist())
    assert labels[0] == labels[1] != labels[2]
    assert labels[0] != sorted(labels[0])  # classes are mixed, not in blocks

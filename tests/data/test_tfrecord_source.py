"""data.name: tfrecord: the record format (CRCs), tf.train.Example parsing, keys and parts."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

from cnnlab.config.load import validate_config
from cnnlab.data import build_data
from cnnlab.data.stream_sources import index_tfrecord, resolve_files
from cnnlab.data.tfrecord import encode_example, masked_crc, parse_example, read_records
from cnnlab.errors import DataError
from shard_fixtures import packed, png_bytes, write_tfrecord


def data_cfg(**data):
    return validate_config({"name": "x", "data": {"name": "tfrecord", **data}}).data


def test_masked_crc_matches_tensorflow() -> None:
    # TensorFlow's crc32c_test: Mask(Value("foo")) and the CRC-32C check value of "123456789".
    import crc32c
    assert crc32c.crc32c(b"123456789") == 0xE3069283
    crc = crc32c.crc32c(b"foo")
    assert masked_crc(b"foo") == ((((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)
    assert masked_crc(b"foo") != crc


def test_example_round_trip_keeps_every_kind_of_feature() -> None:
    features = {"image/encoded": b"\xff\xd8jpeg", "image/class/label": 7, "neg": [-3, 2**40],
                "image/class/text": "cat", "floats": [0.5, -1.25]}
    parsed = parse_example(encode_example(features))
    assert parsed == {"image/encoded": [b"\xff\xd8jpeg"], "image/class/label": [7],
                      "neg": [-3, 2**40], "image/class/text": [b"cat"], "floats": [0.5, -1.25]}


def test_packed_files_index_with_class_names_and_separate_val_files(tmp_path) -> None:
    out = packed(tmp_path, "tfrecord", val_split=0.25)
    source = index_tfrecord(data_cfg(files={"train": str(out / "train-*.tfrecord"),
                                            "val": [str(out / "val-*.tfrecord")]}))
    assert source.classes == ["cat", "dog", "frog"]  # from image/class/text
    assert len(source.parts["train"]) == 27 and len(source.parts["val"]) == 9
    assert len(source.parts["train"].files) > 1  # the 4 kB shard size rolled over
    assert np.bincount(source.parts["val"].labels).tolist() == [3, 3, 3]  # stratified


def test_memory_and_streamed_modes_decode_the_same_images(tmp_path) -> None:
    out = packed(tmp_path, "tfrecord")
    common = {"files": str(out / "*.tfrecord"), "val_split": 0.25, "test_split": 0.0,
              "workers": 0}
    memory = build_data(data_cfg(**common))
    streamed = build_data(data_cfg(**common, cache="none"))
    assert streamed.info["stream"]["samples_per_epoch"] == {"train": 27, "val": 9}
    assert torch.equal(memory.val.labels, streamed.val.labels)
    assert torch.equal(memory.val.images, torch.cat(list(streamed.val.images.split(4))))
    assert streamed.in_shape == memory.in_shape == (3, 16, 16)


def test_custom_feature_keys_and_labels_without_names(tmp_path) -> None:
    records = [{"img": png_bytes(value=v), "y": v % 2} for v in range(6)]
    path = write_tfrecord(tmp_path / "x.tfrecord", records)
    source = index_tfrecord(data_cfg(files=str(path), record_keys={"image": "img", "label": "y"}))
    assert source.classes == ["0", "1"]
    assert source.parts["train"].labels.tolist() == [0, 1, 0, 1, 0, 1]
    with pytest.raises(DataError, match=r"record 0 has no int64 feature 'image/class/label' "
                       r"\(its features: img, y\)"):
        index_tfrecord(data_cfg(files=str(path)))


def _three_records(tmp_path):
    return write_tfrecord(tmp_path / "t.tfrecord",
                          [{"image/encoded": png_bytes(), "image/class/label": i} for i in range(3)])


def test_a_truncated_file_names_the_file_and_record(tmp_path) -> None:
    path = _three_records(tmp_path)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match=r"t\.tfrecord: record 2 .*is truncated"):
        list(read_records(path))
    path.write_bytes(path.read_bytes() + b"\x01\x02")  # a partial length header
    with pytest.raises(DataError, match="record 2"):
        list(read_records(path))


def test_bad_crcs_name_the_record(tmp_path) -> None:
    path = _three_records(tmp_path)
    data = bytearray(path.read_bytes())
    (length,) = struct.unpack("<Q", data[:8])
    second = 16 + length  # the second record starts after the first's header, data, footer
    damaged = bytearray(data)
    damaged[second + 12 + 5] ^= 0xFF  # a byte of record 1's data
    path.write_bytes(bytes(damaged))
    with pytest.raises(DataError, match=r"record 1 .*bad data CRC"):
        list(read_records(path))
    damaged = bytearray(data)
    damaged[second] ^= 0x01  # record 1's length
    path.write_bytes(bytes(damaged))
    with pytest.raises(DataError, match=r"record 1 .*bad length CRC"):
        list(read_records(path))


def test_an_empty_glob_and_a_missing_file_are_refused(tmp_path) -> None:
    with pytest.raises(DataError, match=r"'.*/none-\*\.tfrecord' matches no file"):
        resolve_files(data_cfg(files=str(tmp_path / "none-*.tfrecord")))
    with pytest.raises(DataError, match="data.files is not set"):
        resolve_files(data_cfg())

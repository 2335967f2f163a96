"""data.cache: disk: decoded once into a memory-mapped uint8 file keyed by the files' content
and the preprocessing; splits are views of the map, never copies."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.config.load import validate_config
from cnnlab.data import build_data
from cnnlab.data import disk as disk_module
from cnnlab.data.build import pixel_stats
from cnnlab.errors import ConfigError
from conftest import make_image_folder


def data_cfg(root: Path, cache_dir: Path, **data):
    return validate_config({"name": "x", "data": {
        "name": "imagefolder", "root": str(root), "cache": "disk", "cache_dir": str(cache_dir),
        "val_split": 0.2, "test_split": 0.2, **data}}).data


def entries(cache_dir: Path) -> list[str]:
    return sorted(p.name for p in (cache_dir / "memmap").iterdir())


def test_disk_matches_memory_and_splits_are_views_of_one_map(tmp_path):
    root = make_image_folder(tmp_path / "images", per_class=10, size=8)
    on_disk = build_data(data_cfg(root, tmp_path / "cache"))
    in_memory = build_data(data_cfg(root, tmp_path / "cache", cache="memory"))
    assert on_disk.classes == in_memory.classes
    for name, split in in_memory.splits().items():
        assert torch.equal(on_disk.splits()[name].images, split.images), name
        assert torch.equal(on_disk.splits()[name].labels, split.labels), name
    assert on_disk.mean == pytest.approx(in_memory.mean)
    # train, val and test are consecutive slices of the same mapping: no copies were made.
    per_image = 3 * 8 * 8
    train, val, test = on_disk.train.images, on_disk.val.images, on_disk.test.images
    assert val.data_ptr() - train.data_ptr() == len(train) * per_image
    assert test.data_ptr() - val.data_ptr() == len(val) * per_image
    entry = Path(on_disk.info["cache_entry"])
    assert (entry / "images.u8").stat().st_size == 30 * per_image
    assert on_disk.info["cache"] == "disk"


def test_the_entry_is_reused_and_an_edited_dataset_gets_a_new_one(tmp_path, monkeypatch):
    root = make_image_folder(tmp_path / "images", per_class=6, size=8)
    cache = tmp_path / "cache"
    first = build_data(data_cfg(root, cache))
    assert len(entries(cache)) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again although the entry exists")

    monkeypatch.setattr(disk_module, "decode_chunks", no_decoding)
    again = build_data(data_cfg(root, cache))
    assert torch.equal(again.train.images, first.train.images)
    monkeypatch.undo()

    # Touching a file (same bytes, new mtime) is enough for a new entry.
    target = root / "cat" / "000.png"
    stat = target.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    build_data(data_cfg(root, cache))
    assert len(entries(cache)) == 2
    # Replacing an image's pixels: a new entry that holds the new pixels.
    Image.fromarray(np.full((8, 8, 3), 123, np.uint8)).save(target)
    edited = build_data(data_cfg(root, cache, val_split=0.0, test_split=0.0))
    assert len(entries(cache)) == 3
    assert (edited.train.images == 123).all(dim=(1, 2, 3)).sum() == 1
    # Other preprocessing (size, channels) is another entry too.
    build_data(data_cfg(root, cache, image_size=4, val_split=0.0, test_split=0.0))
    build_data(data_cfg(root, cache, channels=1, val_split=0.0, test_split=0.0))
    assert len(entries(cache)) == 5
    assert not [p for p in (cache / "memmap").iterdir() if p.name.startswith(".")]  # no temp left


def test_a_damaged_entry_is_rebuilt(tmp_path):
    root = make_image_folder(tmp_path / "images", per_class=6, size=8)
    cache = tmp_path / "cache"
    first = build_data(data_cfg(root, cache))
    entry = Path(first.info["cache_entry"])
    (entry / "meta.json").write_text("{broken")
    rebuilt = build_data(data_cfg(root, cache))
    assert torch.equal(rebuilt.train.images, first.train.images)
    assert json.loads((entry / "meta.json").read_text())["shape"] == [18, 3, 8, 8]  # train, val and test
    (entry / "kept.npy").unlink()
    assert len(build_data(data_cfg(root, cache)).train) == 10


def test_a_crash_while_writing_leaves_no_entry(tmp_path, monkeypatch):
    root = make_image_folder(tmp_path / "images", per_class=6, size=8)
    cache = tmp_path / "cache"

    def crash(*args, **kwargs):
        raise KeyboardInterrupt
        yield  # a generator, as decode_chunks is

    monkeypatch.setattr(disk_module, "decode_chunks", crash)
    with pytest.raises(KeyboardInterrupt):
        build_data(data_cfg(root, cache))
    assert list((cache / "memmap").iterdir()) == []


def test_sources_without_files_refuse_disk_naming_those_that_can():
    cfg = validate_config({"name": "x", "data": {"name": "digits", "cache": "disk"}}).data
    with pytest.raises(ConfigError, match=r"works for the sources .*csv, imagefolder.*`digits`"):
        build_data(cfg)


def test_pixel_stats_chunks_large_images_exactly():
    images = torch.randint(0, 256, (5, 3, 300, 300), dtype=torch.uint8)
    mean, std = pixel_stats(images, "standardize")
    x = images.double()
    assert mean == pytest.approx(x.mean(dim=(0, 2, 3)).tolist())
    assert std == pytest.approx(x.std(dim=(0, 2, 3), unbiased=False).tolist(), rel=1e-6)

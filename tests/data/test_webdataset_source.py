"""data.name: webdataset: shard index, distinct shards per worker and rank, well-defined epochs."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from cnnlab.config.load import validate_config
from cnnlab.data import build_data, stream
from cnnlab.data.stream import StreamLoader, _Samples, rank_shards, virtual_shards
from cnnlab.data.stream_sources import index_webdataset
from cnnlab.errors import DataError
from shard_fixtures import mixed_sizes_tar, packed, png_bytes, write_tar


def data_cfg(**data):
    return validate_config({"name": "x", "data": {"name": "webdataset", **data}}).data


@pytest.fixture
def shards(tmp_path):
    return packed(tmp_path, "webdataset", per_class=20, shard_bytes=12000)


def _pixel_sums(batches) -> list[int]:
    return sorted(int(s) for x, _ in batches for s in x.double().sum(dim=(1, 2, 3)))


def test_index_reads_keys_labels_and_names(shards) -> None:
    source = index_webdataset(data_cfg(files=str(shards / "*.tar")))
    part = source.parts["train"]
    assert source.classes == ["cat", "dog", "frog"]
    assert len(part) == 60 and len(part.files) > 3
    assert len(set(part.keys)) == 60 and Counter(part.labels.tolist()) == {0: 20, 1: 20, 2: 20}


@pytest.mark.parametrize("workers", [0, 2])
def test_an_epoch_yields_every_sample_once_in_a_new_order(shards, workers) -> None:
    data = build_data(data_cfg(files=str(shards / "*.tar"), cache="none", val_split=0.0,
                               test_split=0.0, workers=workers, shuffle_buffer=8))
    in_order = list(data.train.images.split(7))
    loader = data.train.loader(16, shuffle=True, seed=3)
    first, second = list(loader), list(loader)
    assert len(first) == len(second) == len(loader) == 4  # 60 = 3 * 16 + 12
    assert _pixel_sums(first) == _pixel_sums(second) == _pixel_sums((x, None) for x in in_order)
    order = [int(s) for x, _ in first for s in x.double().sum(dim=(1, 2, 3))]
    again = [int(s) for x, _ in second for s in x.double().sum(dim=(1, 2, 3))]
    assert order != again  # shards and buffer reshuffled per epoch


def test_workers_and_ranks_read_distinct_shards(shards) -> None:
    part = index_webdataset(data_cfg(files=str(shards / "*.tar"))).parts["train"]
    part.shard_samples = 4
    shard_of = {int(i): s for s, idx in enumerate(virtual_shards(part)) for i in idx}
    seen = []
    for rank in range(2):
        for worker in range(2):
            ds = _Samples(part, (3, 16, 16), True, True, 0, 1)
            ds.rank, ds.world = rank, 2
            samples = list(ds._my_samples(worker, 2))
            seen.append({shard_of[i] for i in samples})
            assert samples
    assert all(not (a & b) for i, a in enumerate(seen) for b in seen[i + 1:])
    assert set().union(*seen) == set(shard_of.values())


def test_ranks_get_balanced_fixed_shards_and_equal_step_counts(shards, monkeypatch) -> None:
    part = index_webdataset(data_cfg(files=str(shards / "*.tar"))).parts["train"]
    part.shard_samples = 7
    owned = rank_shards(virtual_shards(part), 2)
    sizes = [sum(len(virtual_shards(part)[s]) for s in o) for o in owned]
    assert sum(sizes) == 60 and abs(sizes[0] - sizes[1]) <= 7
    counts = []
    for rank in range(2):
        monkeypatch.setattr(stream, "_distributed", lambda rank=rank: (rank, 2))
        loader = StreamLoader(part, (3, 16, 16), 8, shuffle=True)
        counts.append((len(loader), len(list(loader))))
    assert counts[0] == counts[1] and counts[0][0] == counts[0][1]


def test_a_sample_missing_its_label_or_image_names_shard_and_key(tmp_path) -> None:
    write_tar(tmp_path / "s-0.tar", {"a.png": png_bytes(), "a.cls": b"0",
                                     "b.png": png_bytes(), "b.txt": b"dog"})
    with pytest.raises(DataError, match=r"s-0\.tar: sample 'b' has no label \(\.cls; it has "
                       r"\.png, \.txt\)"):
        index_webdataset(data_cfg(files=str(tmp_path / "s-*.tar")))
    write_tar(tmp_path / "s-0.tar", {"a.cls": b"0"})
    with pytest.raises(DataError, match=r"sample 'a' has no image"):
        index_webdataset(data_cfg(files=str(tmp_path / "s-*.tar")))


def test_a_corrupt_shard_and_conflicting_names_are_refused(tmp_path) -> None:
    (tmp_path / "bad.tar").write_bytes(b"not a tar file" * 100)
    with pytest.raises(DataError, match="bad.tar is not a readable tar shard"):
        index_webdataset(data_cfg(files=str(tmp_path / "bad.tar")))
    write_tar(tmp_path / "n.tar", {"a.png": png_bytes(), "a.cls": b"0", "a.txt": b"cat",
                                   "b.png": png_bytes(), "b.cls": b"0", "b.txt": b"dog"})
    with pytest.raises(DataError, match="label 0 is named 'dog' here but 'cat' before"):
        index_webdataset(data_cfg(files=str(tmp_path / "n.tar")))


def test_streamed_images_of_mixed_sizes_without_image_size_fail_while_reading(tmp_path) -> None:
    mixed_sizes_tar(tmp_path / "m.tar")
    data = build_data(data_cfg(files=str(tmp_path / "m.tar"), cache="none", val_split=0.0,
                               test_split=0.0, workers=0))
    with pytest.raises(DataError, match=r"m\.tar \(sample 'k4'\) is \(12, 12\) pixels.*"
                       "set data.image_size"):
        list(data.train.loader(2, shuffle=True))
    assert np.array_equal(data.train.labels.numpy(), [0, 1, 0, 1, 0])


def test_one_small_file_still_gives_every_rank_samples(tmp_path, monkeypatch) -> None:
    members = {}
    for i in range(12):
        members[f"k{i}.png"] = png_bytes(8, 20 * i)
        members[f"k{i}.cls"] = str(i % 2).encode()
    part = index_webdataset(data_cfg(files=str(write_tar(tmp_path / "one.tar", members))))
    part = part.parts["train"]
    seen = {True: [], False: []}
    for rank in range(3):
        monkeypatch.setattr(stream, "_distributed", lambda rank=rank: (rank, 3))
        for shuffle in (True, False):
            loader = StreamLoader(part, (3, 8, 8), 2, shuffle=shuffle)
            batches = list(loader)
            assert batches and len(batches) == len(loader)
            seen[shuffle].extend(int(s) for x, _ in batches for s in x.double().sum(dim=(1, 2, 3)))
    # In order (validation): the ranks' shares are disjoint and cover the split exactly once.
    assert sorted(seen[False]) == sorted(int(20 * i) * 192 for i in range(12))
    assert sorted(seen[True]) == sorted(seen[False])  # shuffled: 3 shards of 4, one per rank

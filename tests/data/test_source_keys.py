"""Each data source declares the `data` keys it reads; a key it ignores is refused."""

from __future__ import annotations

import pytest

from cnnlab.config.load import load_config, validate_config
from cnnlab.data.sources import DATASETS, SOURCE_KEYS, check_source_keys
from cnnlab.errors import ConfigError
from conftest import REPO


def data_cfg(**data):
    return validate_config({"name": "x", "data": data}).data


def test_every_source_declares_its_keys() -> None:
    assert set(SOURCE_KEYS) == set(DATASETS.names())


@pytest.mark.parametrize("data, message", [
    ({"name": "digits", "root": "/nonexistent"}, "`data.root` is not used by `digits`"),
    ({"name": "imagefolder", "root": "/d", "files": "x-*.tar"}, "`data.files` is not used by "
     "`imagefolder`"),
    ({"name": "webdataset", "files": "x-*.tar", "root": "/d"}, "`data.root` is not used by "
     "`webdataset` (its own keys: `data.files`, `data.record_keys`"),
])
def test_a_key_the_source_ignores_is_refused(data, message) -> None:
    with pytest.raises(ConfigError) as info:
        check_source_keys(data_cfg(**data))
    assert message in str(info.value)


@pytest.mark.parametrize("data", [
    {"name": "digits", "root": None},                # spelt-out default
    {"name": "digits", "cache": False, "download": False, "cache_dir": "/tmp/c"},  # harmless
    {"name": "imagefolder", "root": "/data", "cache": False},
    {"name": "npz", "root": "/data/x.npz"},
    {"name": "cifar10", "root": "/data", "download": False},
    {"name": "tfrecord", "files": {"train": "t-*.tfrecord", "val": ["v.tfrecord"]},
     "record_keys": {"image": "img"}, "cache": "none", "workers": 2, "shuffle_buffer": 64},
])
def test_keys_a_source_reads_or_cannot_be_misled_by_are_accepted(data) -> None:
    check_source_keys(data_cfg(**data))


def test_an_unknown_source_lists_the_sources() -> None:
    with pytest.raises(ConfigError, match="imagefolder"):
        check_source_keys(data_cfg(name="imagenett"))


# Sweep files are not experiments; the experiments they start from are in this list already.
@pytest.mark.parametrize("path", [path for path in sorted((REPO / "recipes").rglob("*.yaml"))
                                  + sorted((REPO / "configs").rglob("*.yaml"))
                                  if not path.name.endswith(".sweep.yaml")],
                         ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_experiments_use_only_their_sources_keys(path) -> None:
    check_source_keys(load_config(path).data)

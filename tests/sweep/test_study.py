"""Opening a sweep's storage: the schema race of processes that open a new database at once."""

from __future__ import annotations

import optuna
import pytest
from sqlalchemy.exc import IntegrityError

from cnnlab.errors import ConfigError
from cnnlab.sweep.config import SweepConfig
from cnnlab.sweep.study import open_storage


def _sweep() -> SweepConfig:
    return SweepConfig.model_validate({"name": "sw/t", "base": "x.yaml", "method": "random",
                                       "trials": 1, "parameters": {"train.lr": {"values": [0.1]}}})


def _flaky_storage(monkeypatch, failures: int) -> list[int]:
    real = optuna.storages.RDBStorage
    calls = []

    def storage(*args, **kwargs):
        calls.append(1)
        if len(calls) <= failures:
            raise IntegrityError("INSERT INTO alembic_version", {}, Exception(
                "UNIQUE constraint failed: alembic_version.version_num"))
        return real(*args, **kwargs)

    monkeypatch.setattr(optuna.storages, "RDBStorage", storage)
    return calls


def test_a_schema_created_by_another_process_at_the_same_moment_is_joined(tmp_path, monkeypatch):
    calls = _flaky_storage(monkeypatch, failures=2)
    storage = open_storage(f"sqlite:///{tmp_path / 'study.db'}", _sweep())
    assert len(calls) == 3
    assert storage.get_all_studies() == []


def test_a_storage_that_keeps_failing_is_a_clear_error(tmp_path, monkeypatch):
    _flaky_storage(monkeypatch, failures=100)
    monkeypatch.setattr("cnnlab.sweep.study.time.sleep", lambda seconds: None)
    with pytest.raises(ConfigError, match="Cannot open the sweep storage"):
        open_storage(f"sqlite:///{tmp_path / 'study.db'}", _sweep())

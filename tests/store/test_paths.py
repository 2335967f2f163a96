"""Path safety of run folders and user-named outputs (store/paths.py, new_run_dir)."""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cnnlab.config.load import validate_config
from cnnlab.errors import ConfigError
from cnnlab.store import new_run_dir, safe_output_path, safe_run_path
from cnnlab.store import run as run_mod


@pytest.mark.parametrize("name, reason", [
    ("../../x", "'..'"), ("a/../../b", "'..'"), ("./a", "'.'"), ("/etc/x", "absolute"),
    ("a//b", "empty part"), ("a/", "empty part"), ("a\x00b", "NUL"), ("", "empty"),
    ("a\\..\\b", "backslash"),
])
def test_names_that_would_leave_runs_dir_are_refused(tmp_path, name, reason) -> None:
    with pytest.raises(ConfigError, match=reason):
        safe_run_path(tmp_path / "runs", name)
    assert list(tmp_path.iterdir()) == []  # nothing created, not even runs_dir


def test_a_symlink_inside_runs_dir_does_not_let_a_name_out(tmp_path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "shared").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ConfigError, match="outside runs_dir"):
        new_run_dir(runs, "shared/exp")
    assert list(outside.iterdir()) == []
    # A symlinked runs_dir itself is fine: names are checked against where it resolves.
    (tmp_path / "alias").symlink_to(runs, target_is_directory=True)
    assert new_run_dir(tmp_path / "alias", "a/b").resolve().parent == (runs / "a" / "b").resolve()


def test_good_names_give_folders_under_runs_dir(tmp_path) -> None:
    assert safe_run_path(tmp_path, "satellite/04_rescaling") == tmp_path / "satellite/04_rescaling"
    assert safe_run_path(tmp_path, "v1.2/x..y") == tmp_path / "v1.2/x..y"  # dots inside a part


@pytest.mark.parametrize("name", ["../../x", "a/./b", "..", "a/.."])
def test_the_schema_refuses_dot_parts_with_the_reason(name) -> None:
    with pytest.raises(ConfigError, match=r"`name`.*'\.' or '\.\.' parts"):
        validate_config({"name": name})


def test_runs_started_in_the_same_second_get_distinct_folders(tmp_path, monkeypatch) -> None:
    # The random suffix collides on the first draw: the folder is drawn again, never shared.
    draws = itertools.chain(["abcd", "abcd", "abcd"], (f"{i:04x}" for i in range(100)))
    monkeypatch.setattr(run_mod.secrets, "token_hex", lambda n: next(draws))

    class Frozen:
        @staticmethod
        def now():
            from datetime import datetime
            return datetime(2026, 12, 3, 12, 0, 0)

    monkeypatch.setattr(run_mod, "datetime", Frozen)
    first = new_run_dir(tmp_path, "same")
    second = new_run_dir(tmp_path, "same")
    assert first.name == "20261203-120000-abcd" and second != first and second.is_dir()


def test_concurrent_new_run_dirs_are_all_distinct(tmp_path) -> None:
    with ThreadPoolExecutor(8) as pool:
        folders = list(pool.map(lambda _: new_run_dir(tmp_path, "busy/exp"), range(64)))
    assert len(set(folders)) == 64 and all(f.is_dir() for f in folders)


def test_an_output_that_is_a_symlink_is_refused(tmp_path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    link = tmp_path / "out.csv"
    link.symlink_to(victim)
    with pytest.raises(ConfigError, match="symbolic link"):
        safe_output_path(link)
    with pytest.raises(ConfigError, match="is a folder"):
        safe_output_path(tmp_path)
    with pytest.raises(ConfigError, match="NUL"):
        safe_output_path("a\x00b.csv")
    assert safe_output_path(tmp_path / "new.csv") == tmp_path / "new.csv"
    assert victim.read_text() == "keep"

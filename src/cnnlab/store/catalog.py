"""Finding run folders and reading what they recorded: ``find_runs(targets, runs_dir)``.

A target is a path (a run folder, or any folder holding run folders at any depth) or, when
no such path exists, a glob over experiment names (``report000/*``) matched against the runs
under ``runs_dir``. A run folder is one holding ``config.yaml`` and ``metrics.json``;
``evaluations/`` and ``checkpoints/`` inside a run are never runs themselves.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from cnnlab.errors import RunError
from cnnlab.store.run import read_json

_NOT_RUNS = {"evaluations", "checkpoints"}


@dataclass
class RunRecord:
    """One run folder's recorded files, as plain dicts."""

    run_dir: Path
    config: dict[str, Any]
    metrics: dict[str, Any]
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.metrics.get("name") or self.config.get("name") or self.run_dir.parent.name)

    @property
    def run_id(self) -> str:
        return self.run_dir.name

    @property
    def status(self) -> str:
        return str(self.metrics.get("status", "unknown"))

    @property
    def seed(self) -> int | None:
        seed = self.metrics.get("seed", (self.config.get("train") or {}).get("seed"))
        return int(seed) if seed is not None else None

    @property
    def group(self) -> str | None:
        return self.metrics.get("group")


@dataclass
class Catalog:
    runs: list[RunRecord]
    skipped: list[str]  # "path: why" for folders that looked like runs but could not be read


def find_runs(targets: Sequence[str | Path], runs_dir: Path = Path("runs")) -> Catalog:
    """Every run folder the targets name (all runs under ``runs_dir`` when there are none)."""
    folders: dict[Path, None] = {}
    if not targets:
        if not Path(runs_dir).is_dir():
            raise RunError(f"The runs folder {runs_dir} does not exist: name run folders or "
                           "experiment patterns, or pass --runs-dir.")
        targets = [runs_dir]
    everything: list[Path] | None = None
    for target in targets:
        path = Path(target)
        if path.exists():
            found = run_folders(path)
            if not found:
                raise RunError(f"{path} holds no run folders (folders with config.yaml and "
                               "metrics.json).")
        else:
            if everything is None:
                everything = run_folders(Path(runs_dir)) if Path(runs_dir).is_dir() else []
            found = [p for p in everything if _matches(p, str(target), Path(runs_dir))]
            if not found:
                raise RunError(f"{target!r} is neither a path nor a pattern matching an experiment "
                               f"under {runs_dir} (names there: "
                               f"{', '.join(sorted({_name_of(p, Path(runs_dir)) for p in everything})[:20]) or 'none'}).")
        for folder in found:
            folders[folder.resolve()] = None
    runs, skipped = [], []
    for folder in folders:
        try:
            runs.append(read_run(folder))
        except (OSError, ValueError, yaml.YAMLError) as exc:
            skipped.append(f"{folder}: {type(exc).__name__}: {exc}")
    return Catalog(runs, skipped)


def run_folders(root: Path) -> list[Path]:
    """Run folders at or below ``root``, sorted by path."""
    root = Path(root)
    if _is_run(root):
        return [root]
    found = []
    for config in root.rglob("config.yaml"):
        folder = config.parent
        if _NOT_RUNS & set(folder.relative_to(root).parts):
            continue
        if _is_run(folder):
            found.append(folder)
    return sorted(found)


class DamagedRunError(RunError, ValueError):
    """A run file is missing or unreadable: a message for `cnnlab report`, a skip for compare
    (which catches ValueError)."""


def read_run(folder: Path) -> RunRecord:
    config = _read(folder / "config.yaml", lambda p: yaml.safe_load(p.read_text(encoding="utf-8")))
    metrics = _read(folder / "metrics.json", read_json)
    data_path = folder / "data.json"
    data = _read(data_path, read_json) if data_path.is_file() else {}
    for name, value in (("config.yaml", config or {}), ("metrics.json", metrics)):
        if not isinstance(value, dict):
            raise DamagedRunError(f"{folder / name} does not hold a mapping; the run folder is "
                                  "damaged.")
    return RunRecord(folder, config or {}, metrics, data)


def _read(path: Path, parse) -> Any:
    try:
        return parse(path)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise DamagedRunError(f"{path} cannot be read ({type(exc).__name__}: "
                              f"{' '.join(detail.split())}); the run folder is damaged.") from None


def _is_run(folder: Path) -> bool:
    return (folder / "config.yaml").is_file() and (folder / "metrics.json").is_file()


def _name_of(folder: Path, runs_dir: Path) -> str:
    try:
        metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
        if isinstance(metrics, dict) and metrics.get("name"):
            return str(metrics["name"])
    except (OSError, ValueError):
        pass
    try:
        return folder.parent.relative_to(runs_dir).as_posix()
    except ValueError:
        return folder.parent.name


def _matches(folder: Path, pattern: str, runs_dir: Path) -> bool:
    name = _name_of(folder, runs_dir)
    return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(f"{name}/{folder.name}", pattern)

"""Finding run folders by path or experiment-name pattern."""

import json

import pytest
import yaml

from cnnlab.errors import RunError
from cnnlab.store.catalog import find_runs, run_folders


def fake_run(root, name, run_id, status="completed", seed=42):
    folder = root / name / run_id
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({"name": name, "train": {"seed": seed}}))
    (folder / "metrics.json").write_text(json.dumps({"name": name, "status": status}))
    return folder


def test_run_folders_skip_evaluations_and_checkpoints(tmp_path):
    run = fake_run(tmp_path, "exp/a", "r1")
    inner = run / "evaluations" / "e1"
    inner.mkdir(parents=True)
    (inner / "metrics.json").write_text("{}")
    (inner / "config.yaml").write_text("name: not-a-run\n")
    (run / "checkpoints").mkdir()
    assert run_folders(tmp_path) == [run]
    assert run_folders(run) == [run]


def test_targets_are_paths_or_name_patterns(tmp_path):
    a1 = fake_run(tmp_path, "report000/1_basic", "r1")
    a2 = fake_run(tmp_path, "report000/2_aug", "r2", seed=7)
    b = fake_run(tmp_path, "other/x", "r3")
    names = lambda targets: sorted(r.run_dir.name for r in find_runs(targets, tmp_path).runs)
    assert names([]) == ["r1", "r2", "r3"]
    assert names(["report000/*"]) == ["r1", "r2"]
    assert names([str(b)]) == ["r3"]
    assert names([str(a1), "report000/*"]) == ["r1", "r2"]  # no duplicates
    (run,) = find_runs([str(a2)], tmp_path).runs
    assert run.name == "report000/2_aug" and run.seed == 7 and run.status == "completed"
    with pytest.raises(RunError, match="neither a path nor a pattern"):
        find_runs(["nothing/*"], tmp_path)
    with pytest.raises(RunError, match="does not exist"):
        find_runs([], tmp_path / "missing")


def test_unreadable_runs_are_reported_not_fatal(tmp_path):
    fake_run(tmp_path, "exp", "good")
    bad = fake_run(tmp_path, "exp", "bad")
    (bad / "metrics.json").write_text("{half")
    catalog = find_runs([], tmp_path)
    assert [r.run_id for r in catalog.runs] == ["good"] and "bad" in catalog.skipped[0]

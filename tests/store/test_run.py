import json
import os

import pytest
import torch
from safetensors.torch import load_file

from cnnlab.errors import RunError
from cnnlab.store import (environment, new_run_dir, open_run, save_weights, write_csv, write_json,
                          write_text)
from cnnlab.store import run as run_module


def test_run_dirs_nest_the_experiment_name_and_are_unique(tmp_path):
    a = new_run_dir(tmp_path, "satellite/04_rescaling")
    b = new_run_dir(tmp_path, "satellite/04_rescaling")
    assert a.parent == b.parent == tmp_path / "satellite" / "04_rescaling" and a != b


def test_writes_are_atomic_and_leave_no_temporaries(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    write_json(path, {"status": "running"})

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(run_module.os, "replace", crash)
    with pytest.raises(OSError):
        write_json(path, {"status": "completed"})
    assert json.loads(path.read_text()) == {"status": "running"}  # old content intact
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_csv_and_text(tmp_path):
    write_csv(tmp_path / "h.csv", [{"epoch": 1, "loss": 0.5, "extra": 1}], ["epoch", "loss"])
    assert (tmp_path / "h.csv").read_text() == "epoch,loss\n1,0.5\n"
    write_text(tmp_path / "s.txt", "hello")
    assert (tmp_path / "s.txt").read_text() == "hello"


def test_weights_round_trip_through_safetensors(tmp_path):
    module = torch.nn.Linear(3, 2)
    save_weights(module, tmp_path / "model.safetensors")
    state = load_file(str(tmp_path / "model.safetensors"))
    assert torch.equal(state["weight"], module.weight.detach())


def test_environment_records_versions():
    env = environment()
    assert env["versions"]["torch"] and env["versions"]["python"]
    assert "git_sha" in env
    # CPU timings from different hosts differ 2x at the same core count: the model and the
    # vector unit torch uses travel with every run and every benchmark line.
    machine = env["machine"]
    assert machine["cpu_model"] and machine["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert run_module.cpu_description().endswith(f"{machine['cpu_capability']}, {os.cpu_count()} cores")


def test_open_run_refuses_other_folders(tmp_path):
    with pytest.raises(RunError, match="not a cnnlab run folder"):
        open_run(tmp_path)

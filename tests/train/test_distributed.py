"""Multi-process training for real: 2 CPU processes (gloo) launched by Lightning's DDP launcher
or by torchrun as two "nodes" on 127.0.0.1, on digits for one short epoch."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cnnlab.config import validate_config
from cnnlab.errors import ConfigError
from cnnlab.store import read_history
from cnnlab.train.distributed import layout, oversubscription, per_process_batch
from conftest import REPO, tiny_experiment

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    [str(REPO / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])}


def ddp_cfg(tmp_path: Path, name: str, **train) -> Path:
    cfg = tiny_experiment(tmp_path, {"name": "digits"}, name=name)
    # checkpoint null: the weights evaluated at the end are the last epoch's, the same ones the
    # last epoch's (distributed) validation scored.
    cfg["train"].update({"batch_size": 64, "devices": 2, "threads": 1, "checkpoint": None,
                         **train})
    path = tmp_path / f"{name.replace('/', '_')}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_dirs(tmp_path: Path) -> list[Path]:
    return sorted(p.parent for p in (tmp_path / "runs").rglob("config.yaml")
                  if p.parent.parent.name != "checkpoints")


def test_two_processes_write_one_run_scored_over_the_whole_split(tmp_path):
    path = ddp_cfg(tmp_path, "ddp/two")
    done = subprocess.run([sys.executable, "-m", "cnnlab", "run", str(path)], env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (run_dir,) = run_dirs(tmp_path)  # rank 1 made no folder of its own
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["world_size"] == 2
    assert done.stdout.count("results:") == 1  # one report, from rank 0
    (row,) = read_history(run_dir)
    # Each rank validated half of the split; the logged epoch value is over all of it, so it
    # equals rank 0's single-process evaluation of the same weights afterwards.
    assert row["val_accuracy"] == pytest.approx(metrics["val"]["accuracy"], abs=1e-6)
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_torchrun_two_nodes_on_localhost(tmp_path):
    path = ddp_cfg(tmp_path, "ddp/nodes", devices=1)
    port = free_port()
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2",
               "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-id", "cnnlab-test",
               "--rdzv-endpoint", f"127.0.0.1:{port}", "-m", "cnnlab", "run", str(path)]
    nodes = [subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for _ in range(2)]
    outputs = []
    try:
        for node in nodes:
            outputs.append(node.communicate(timeout=300)[0])
    finally:
        for node in nodes:
            node.kill() if node.poll() is None else None
    assert [n.returncode for n in nodes] == [0, 0], "\n".join(o[-3000:] for o in outputs)
    (run_dir,) = run_dirs(tmp_path)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["world_size"] == 2
    # Distinct ranks: exactly one node (rank 0) evaluated and reported.
    assert sorted(o.count("results:") for o in outputs) == [0, 1]


def test_killed_worker_ends_the_job_and_resume_continues(tmp_path):
    # The default checkpoint (best val_loss + last): Lightning saves last.ckpt with each best one.
    path = ddp_cfg(tmp_path, "ddp/killed", epochs=200, checkpoint={})
    job = subprocess.Popen([sys.executable, "-m", "cnnlab", "run", str(path)], env=ENV,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not (
                list((tmp_path / "runs").rglob("last.ckpt")) and _child_pids(job.pid)):
            time.sleep(0.5)
        worker = _child_pids(job.pid)
        assert worker, "rank 1 never started"
        os.kill(worker[0], signal.SIGKILL)
        started = time.monotonic()
        job.wait(timeout=120)
        assert job.returncode != 0
        assert time.monotonic() - started < 120
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    (run_dir,) = run_dirs(tmp_path)
    epochs_before = len(read_history(run_dir))
    assert epochs_before < 200
    # Continue with the same 2 processes for one more epoch (a short budget: what matters is
    # that every rank loads the checkpoint and rank 0 finishes the run folder).
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["train"].update({"epochs": epochs_before + 1})
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    done = subprocess.run([sys.executable, "-m", "cnnlab", "resume", str(run_dir)], env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert len(read_history(run_dir)) == epochs_before + 1
    assert run_dirs(tmp_path) == [run_dir]  # the resumed ranks made no folder of their own
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["world_size"] == 2


def _child_pids(pid: int) -> list[int]:
    """The ranks Lightning's launcher started: child processes running cnnlab."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    pids = [int(p) for p in children.read_text().split()] if children.exists() else []
    return [p for p in pids if b"cnnlab" in Path(f"/proc/{p}/cmdline").read_bytes()]


def test_batch_size_is_global_and_must_split_evenly(tmp_path):
    cfg = validate_config(tiny_experiment(tmp_path, {"name": "digits"},
                                          train={"devices": 2, "batch_size": 64}), source="t")
    assert per_process_batch(cfg.train, layout(cfg.train)) == 32
    odd = cfg.train.model_copy(update={"batch_size": 63})
    with pytest.raises(ConfigError, match="global batch"):
        per_process_batch(odd, layout(odd))


def test_more_processes_than_cores_warns(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    cfg = validate_config(tiny_experiment(tmp_path, {"name": "digits"},
                                          train={"devices": 3, "device": "cpu"}), source="t")
    assert "3 on a machine with 2 cores" in oversubscription(cfg.train, layout(cfg.train))
    assert oversubscription(cfg.train.model_copy(update={"devices": 2}),
                            layout(cfg.train.model_copy(update={"devices": 2}))) is None


@pytest.mark.skipif((os.cpu_count() or 1) > 2, reason="checks more processes than cores on a "
                    "2-core machine")
def test_three_processes_on_two_cores_warn_and_finish(tmp_path):
    path = ddp_cfg(tmp_path, "ddp/three", devices=3, batch_size=48, threads=None)
    done = subprocess.run([sys.executable, "-m", "cnnlab", "run", str(path)], env=ENV,
                          capture_output=True, text=True, timeout=300)  # never a hang
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "train.devices is 3 on a machine with 2 cores" in done.stderr
    (run_dir,) = run_dirs(tmp_path)
    assert json.loads((run_dir / "metrics.json").read_text())["world_size"] == 3


def test_torchrun_environment_decides_the_layout(tmp_path, monkeypatch):
    cfg = validate_config(tiny_experiment(tmp_path, {"name": "digits"}), source="t")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "x")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    shape = layout(cfg.train)
    assert (shape.devices, shape.num_nodes, shape.strategy, shape.world_size) == (2, 2, "ddp", 4)


def test_seeds_with_several_processes_is_refused(tmp_path):
    from cnnlab.pipeline import run_seeds

    cfg = validate_config(tiny_experiment(tmp_path, {"name": "digits"}, train={"devices": 2}),
                          source="t")
    with pytest.raises(ConfigError, match="--seeds with train.devices"):
        run_seeds(cfg, 2, say=lambda text: None)
    assert not (tmp_path / "runs").exists()

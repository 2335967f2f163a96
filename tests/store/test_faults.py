"""Faults injected into runs of the digits demo: a full disk, a read-only runs folder, and a
SIGKILL in the middle of a checkpoint write. Each must end in a clear message (exit code 2)
or a run that `cnnlab resume` finishes, never a traceback or a silently damaged run."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cnnlab.cli import main
from cnnlab.store import run as run_mod
from conftest import REPO, tiny_experiment


def cli(argv, capsys) -> tuple[int, str]:
    """Exit code and stderr; stdout is kept in ``cli.out``."""
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    cli.out = captured.out
    return code, captured.err


def digits(tmp_path: Path, epochs: int = 2) -> Path:
    cfg = tiny_experiment(tmp_path, {"name": "digits", "max_per_class": 30},
                          train={"epochs": epochs, "checkpoint": {"monitor": "val_loss"}})
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def the_run(tmp_path: Path) -> Path:
    (folder,) = {p.parent for p in (tmp_path / "runs").rglob("config.yaml")}
    return folder


def epochs_in(run: Path) -> list[int]:
    return [int(line.split(",")[0]) for line in (run / "history.csv").read_text().splitlines()[1:]]


def test_a_full_disk_fails_the_run_with_the_reason_and_resume_finishes_it(tmp_path, capsys,
                                                                          monkeypatch) -> None:
    real_replace = os.replace
    writes = {"history": 0}

    def full_disk(src, dst):
        if Path(dst).name == "history.csv":
            writes["history"] += 1
            if writes["history"] == 2:  # epoch 2's row: epoch 1 is checkpointed by then
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_replace(src, dst)

    monkeypatch.setattr(run_mod.os, "replace", full_disk)
    code, err = cli(["run", str(digits(tmp_path))], capsys)
    assert code == 2 and "Traceback" not in err
    assert "No space left on device" in err and "history.csv" in err
    run = the_run(tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "failed" and "No space left on device" in metrics["error"]
    assert not list(run.glob(".history.csv.*.tmp"))  # the temporary file is cleaned up

    monkeypatch.setattr(run_mod.os, "replace", real_replace)  # space freed
    code, err = cli(["resume", str(run)], capsys)
    assert code == 0, err
    assert json.loads((run / "metrics.json").read_text())["status"] == "completed"
    assert epochs_in(run) == [1, 2]


@pytest.mark.parametrize("how", ["sys", "chmod"])
def test_a_read_only_runs_dir_fails_before_training(tmp_path, capsys, how) -> None:
    if how == "sys":
        # /sys refuses new folders even to root: a read-only place that needs no permissions.
        if not Path("/sys/kernel").is_dir():
            pytest.skip("no /sys on this system")
        runs = Path("/sys/kernel/cnnlab-runs")
    else:
        if os.geteuid() == 0:
            pytest.skip("running as root: chmod does not stop root from writing (the /sys "
                        "variant covers a read-only runs_dir)")
        runs = tmp_path / "readonly"
        runs.mkdir()
        runs.chmod(0o500)
    code, err = cli(["run", str(digits(tmp_path)), "--runs-dir", str(runs)], capsys)
    assert code == 2 and "Traceback" not in err
    assert "Cannot create the run folder" in err and "data: digits" not in cli.out


KILLER = r"""
import os, signal, sys
import fsspec.implementations.local as local

# Die by SIGKILL half-way through the N-th checkpoint write (Lightning writes .ckpt files
# through fsspec): what a power cut or the OOM killer does.
count = {"n": 0}
def write(self, data):
    if str(self.path).endswith(".ckpt"):
        count["n"] += 1
        if count["n"] == int(sys.argv[2]):
            self.f.write(data[: len(data) // 2])
            self.f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    return self.f.write(data)
local.LocalFileOpener.write = write

from cnnlab.cli import main
main(["run", sys.argv[1]])
"""


def test_sigkill_during_a_checkpoint_write_leaves_a_resumable_run(tmp_path, capsys) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"),
                                                        os.environ.get("PYTHONPATH", "")])}
    # Epoch 1 writes best.ckpt and last.ckpt; the 3rd write is epoch 2's first.
    done = subprocess.run([sys.executable, "-c", KILLER, str(digits(tmp_path, epochs=3)), "3"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == -9, done.stderr[-2000:]
    run = the_run(tmp_path)
    assert (run / "checkpoints" / "last.ckpt").is_file()
    run_mod.check_checkpoint(run / "checkpoints" / "last.ckpt")  # the previous one is whole
    code, err = cli(["resume", str(run)], capsys)
    assert code == 0, err
    assert json.loads((run / "metrics.json").read_text())["status"] == "completed"
    assert epochs_in(run) == [1, 2, 3]  # continuous history across the kill


def test_ctrl_c_twice_interrupts_cleanly_and_leaves_a_resumable_run(tmp_path) -> None:
    import signal
    import time

    cfg = tiny_experiment(tmp_path, {"name": "digits"}, train={"epochs": 500, "batch_size": 32})
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"),
                                                        os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", "from cnnlab.cli import main; main()", "run",
                             str(path)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 120
        while not list((tmp_path / "runs").rglob("last.ckpt")) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)  # impatient: a second Ctrl+C during the shutdown
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    # 1: the run stopped as interrupted; 130 or death by SIGINT (-2): the second Ctrl+C landed
    # after cnnlab restored the default handler, while the process was already finishing.
    assert proc.returncode in (1, 130, -signal.SIGINT), err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    run = the_run(tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "interrupted", metrics.get("error")
    run_mod.check_checkpoint(run / "checkpoints" / "last.ckpt")
    assert epochs_in(run) == list(range(1, len(epochs_in(run)) + 1))

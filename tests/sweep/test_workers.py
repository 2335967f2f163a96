"""Several workers on one sweep: two local processes on SQLite with one SIGKILLed mid-trial
(the other reruns its trial, --resume finishes), and two workers on a real PostgreSQL server.

The PostgreSQL server comes from CNNLAB_TEST_POSTGRES_URL (`.ci/run` starts one), else this
module starts a throw-away one with `.ci/postgres.sh`; it skips only where no PostgreSQL
server can be installed or started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import optuna
import pytest

from cnnlab.sweep import load_sweep, run_sweep
from cnnlab.sweep.study import default_storage_url
from sweep_helpers import write_sweep

REPO = Path(__file__).resolve().parents[2]


def _sweep_cli(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cnnlab.cli", "sweep", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_a_killed_worker_trial_is_rerun_and_resume_completes_the_sweep(tmp_path):
    path = write_sweep(tmp_path, {"method": "random", "trials": 4, "heartbeat_seconds": 1,
                                  "parameters": {"train.lr": {"uniform": [0.001, 0.01]}}},
                       epochs=4)
    folder = tmp_path / "runs" / "sw" / "test"
    proc = _sweep_cli([str(path), "--workers", "2"], tmp_path)
    victim = None
    deadline = time.time() + 180
    while victim is None and time.time() < deadline and proc.poll() is None:
        time.sleep(0.3)
        if not (folder / "study.db").is_file():
            continue
        try:
            study = optuna.load_study(study_name="sw/test", storage=default_storage_url(folder))
            running = [t for t in study.get_trials(deepcopy=False)
                       if t.state.name == "RUNNING" and "pid" in t.user_attrs]
        except Exception:  # the study is being created
            continue
        if running:
            victim = running[0]
            os.kill(victim.user_attrs["pid"], signal.SIGKILL)
    output, _ = proc.communicate(timeout=300)
    assert victim is not None, output
    assert "killed by a signal" in output, output

    # Whatever the surviving worker finished, --resume completes the sweep.
    outcome = run_sweep(load_sweep(path), resume=True, say=lambda text: None)
    assert outcome.status == "completed"
    study = optuna.load_study(study_name="sw/test", storage=default_storage_url(folder))
    trials = study.get_trials(deepcopy=False)
    states = {t.number: t.state.name for t in trials}
    assert states[victim.number] == "FAIL"
    assert sum(s == "COMPLETE" for s in states.values()) == 4  # nothing counted twice
    rerun = [t for t in trials if victim.number in
             (t.user_attrs.get("retry_of"), t.system_attrs.get("failed_trial"))]
    assert len(rerun) == 1 and rerun[0].state.name == "COMPLETE"
    assert rerun[0].params == victim.params


@pytest.fixture(scope="module")
def postgres_url():
    url = os.environ.get("CNNLAB_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    folder = tempfile.mkdtemp(prefix="cnnlab-pg-")
    port = str(56000 + os.getpid() % 1000)
    started = subprocess.run(["bash", str(REPO / ".ci" / "postgres.sh"), "start", folder, port],
                             capture_output=True, text=True, timeout=900)
    if started.returncode != 0:
        print(f"PostgreSQL could not be started: {started.stderr.strip()[-500:]}")
        pytest.skip("no PostgreSQL server could be started here (set CNNLAB_TEST_POSTGRES_URL "
                    f"or install postgresql): {started.stderr.strip()[-200:]}")
    try:
        yield started.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run(["bash", str(REPO / ".ci" / "postgres.sh"), "stop", folder],
                       capture_output=True, timeout=120)


def test_two_workers_on_postgresql_finish_one_sweep_together(tmp_path, postgres_url):
    name = f"pg/{uuid.uuid4().hex[:8]}"
    path = write_sweep(tmp_path, {"method": "optuna", "trials": 8, "startup_trials": 2,
                                  "parameters": {"train.lr": {"log_uniform": [1e-3, 1e-2]}}},
                       epochs=3, name=name)
    proc = _sweep_cli([str(path), "--workers", "2", "--storage", postgres_url], tmp_path)
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output
    password = postgres_url.split(":")[2].split("@")[0]
    assert password not in output and password not in (
        tmp_path / "runs" / name / "sweep.json").read_text()
    study = optuna.load_study(study_name=name, storage=postgres_url)
    trials = study.get_trials(deepcopy=False)
    assert sum(t.state.name == "COMPLETE" for t in trials) == 8
    assert {t.user_attrs["worker"] for t in trials} == {0, 1}
    assert len({t.user_attrs["pid"] for t in trials}) == 2
    assert (tmp_path / "runs" / name / "report.html").is_file()

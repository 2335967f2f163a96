"""A real MLflow tracking server for the tracking tests (SQLite backend, local artifact folder).

CI (.ci/mlflow.sh) starts one and exports CNNLAB_TEST_MLFLOW_URI; elsewhere the fixture starts
its own on a free port of 127.0.0.1 and stops it when the session ends.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("mlflow", reason="the track extra is not installed (pip install -e '.[track]')")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def healthy(uri: str) -> bool:
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def start_server(folder: Path, timeout: float = 90.0) -> tuple[subprocess.Popen, str]:
    """``mlflow server`` on a free port of 127.0.0.1; (process, URI) once /health answers."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = open(folder / "server.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
         "--artifacts-destination", str(folder / "artifacts")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if healthy(uri):
            return proc, uri
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    stop_server(proc)
    tail = (folder / "server.log").read_text(errors="replace")[-2000:]
    pytest.skip(f"mlflow server did not start within {timeout:.0f} s: {tail}")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        # The server runs uvicorn workers in its own session: end the whole group.
        os.killpg(proc.pid, 9)
        proc.wait(timeout=30)


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory):
    given = os.environ.get("CNNLAB_TEST_MLFLOW_URI")
    if given:
        if not healthy(given):
            pytest.fail(f"CNNLAB_TEST_MLFLOW_URI={given} does not answer on /health")
        yield given
        return
    proc, uri = start_server(tmp_path_factory.mktemp("mlflow-server"))
    try:
        yield uri
    finally:
        stop_server(proc)

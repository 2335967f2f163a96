"""bench/scale.py (its tracking-overhead part) runs on tiny settings and appends its figures to a file."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

pytest.importorskip("mlflow")


def test_scale_bench_tiny(tmp_path):
    out = tmp_path / "scale.md"
    out.write_text("## Measured\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run([sys.executable, str(REPO / "bench" / "scale.py"), "--tiny", "--parts",
                           "overhead", "--out", str(out)], env=env, capture_output=True, text=True, timeout=600,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    # The DDP part's `cnnlab run --set train.devices=2` is covered by tests/train/test_distributed.py;
    # running it here again would add half a minute to every test run.
    assert "ddp_step7_1_epoch" not in figures
    assert figures["logging_overhead"]["mlflow_status"] == "logged"
    # MLflow's SQLite store keeps artifacts beside the database, not in ./mlruns of the caller.
    assert not (tmp_path / "mlruns").exists()
    text = out.read_text()
    assert text.startswith("## Measured\n") and "(tiny settings)" in text

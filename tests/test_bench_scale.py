"""bench/scale.py runs end to end on tiny settings and appends its figures to the given file."""

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
    done = subprocess.run([sys.executable, str(REPO / "bench" / "scale.py"), "--tiny", "--out",
                           str(out)], env=env, capture_output=True, text=True, timeout=600,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    ddp = figures["ddp_step7_1_epoch"]
    assert ddp["devices_1"]["world_size"] == 1 and ddp["devices_2"]["world_size"] == 2
    assert ddp["devices_2"]["train_images_per_s"] > 0
    assert figures["logging_overhead"]["mlflow_status"] == "logged"
    # MLflow's SQLite store keeps artifacts beside the database, not in ./mlruns of the caller.
    assert not (tmp_path / "mlruns").exists()
    text = out.read_text()
    assert text.startswith("## Measured\n") and "(tiny settings)" in text

"""``cnnlab sync``: upload finished run folders to an MLflow server, once each."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from cnnlab.store.catalog import find_runs
from cnnlab.track.mlflow_run import sync_run

Say = Callable[[str], None]


def sync_targets(targets: Sequence[str], runs_dir: Path, uri: str, *, experiment: str | None,
                 say: Say) -> int:
    """Sync every run the targets name; returns how many could not be uploaded."""
    catalog = find_runs(list(targets), runs_dir)
    for problem in catalog.skipped:
        say(f"skipped {problem}")
    failures = 0
    for run in catalog.runs:
        if run.status == "running":
            say(f"{run.run_dir}: still running (or killed without a word): skipped")
            continue
        try:
            run_id, what = sync_run(run.run_dir, uri, experiment=experiment)
        except Exception as exc:  # the server: keep going with the other runs
            failures += 1
            say(f"{run.run_dir}: upload failed ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:300] if str(exc) else ''})")
            continue
        say(f"{run.run_dir}: {what} (MLflow run {run_id})")
    if not catalog.runs:
        say("no run folders matched")
    return failures

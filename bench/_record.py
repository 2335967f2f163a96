"""Where the benchmark scripts leave their figures: printed, and appended to docs/performance.md."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

PERFORMANCE = Path(__file__).resolve().parents[1] / "docs" / "performance.md"


def record(heading: str, figures: dict, doc_path: Path = PERFORMANCE) -> None:
    """Print ``figures`` as one JSON line and append it under ``heading`` (with its time)."""
    line = json.dumps(figures)
    print(line)
    with Path(doc_path).open("a") as doc:
        doc.write(f"\n- {heading} ({figures['measured_at']}): `{line}`\n")


def stamped(figures: dict) -> dict:
    """``figures`` plus the host's CPU and the time: what a timing needs beside it to be read."""
    from cnnlab.store.run import cpu_description

    return {**figures, "cpu": cpu_description(),
            "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}

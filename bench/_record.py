"""Where the benchmark scripts leave their figures: printed, and appended to docs/performance.md."""

from __future__ import annotations

import json
from pathlib import Path

PERFORMANCE = Path(__file__).resolve().parents[1] / "docs" / "performance.md"


def record(heading: str, figures: dict, doc_path: Path = PERFORMANCE) -> None:
    """Print ``figures`` as one JSON line and append it under ``heading`` (with its time)."""
    line = json.dumps(figures)
    print(line)
    with Path(doc_path).open("a") as doc:
        doc.write(f"\n- {heading} ({figures['measured_at']}): `{line}`\n")

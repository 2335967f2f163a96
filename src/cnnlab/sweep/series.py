"""What a step of a series changes: the config keys that differ from the previous step, in
compare's compact form, and the metric's change, in points for accuracies.

Layer and augmentation lists are diffed item by item (``model.layers: +batchnorm x4``), so
a step that inserts a layer reads as that insertion, not as the whole new architecture.
"""

from __future__ import annotations

import difflib
import math
from typing import Any, Sequence

from cnnlab.report.compare import compact_specs, differing_config_keys, plain_text, result_config

__all__ = ["config_changes", "format_delta", "format_value", "in_points"]


def config_changes(previous: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``key=value`` for every result-relevant setting of ``current`` (a nested config, as in
    config.yaml) that differs from ``previous``; settings that cannot change a result (name,
    description, seed, threads...) are left out, as compare leaves them out."""
    before, after = result_config(previous), result_config(current)
    changes = []
    for key in differing_config_keys([before, after]):
        if key not in after:
            changes.append(f"-{key}")
        elif key not in before:
            changes.append(f"{key}={plain_text(after[key])}")
        elif _is_spec_list(before[key]) and _is_spec_list(after[key]):
            changes.append(f"{key}: {spec_list_changes(before[key], after[key])}")
        else:
            changes.append(f"{key}={plain_text(after[key])}")
    return changes


def _is_spec_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, dict) and "type" in v for v in value)


def spec_list_changes(before: Sequence[dict], after: Sequence[dict]) -> str:
    """``conv2d > flatten`` -> ``conv2d > batchnorm > flatten`` gives ``+batchnorm``; runs of
    the same change are counted (``+batchnorm x4``)."""
    old = [compact_specs([item]) for item in before]
    new = [compact_specs([item]) for item in after]
    edits: list[str] = []
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "insert":
            edits += [f"+{item}" for item in new[j1:j2]]
        elif op == "delete":
            edits += [f"-{item}" for item in old[i1:i2]]
        elif op == "replace" and i2 - i1 == j2 - j1:
            edits += [f"{a} -> {b}" for a, b in zip(old[i1:i2], new[j1:j2])]
        elif op == "replace":
            edits += [f"-{item}" for item in old[i1:i2]] + [f"+{item}" for item in new[j1:j2]]
    counted: list[tuple[str, int]] = []
    for edit in edits:
        if counted and counted[-1][0] == edit:
            counted[-1] = (edit, counted[-1][1] + 1)
        else:
            counted.append((edit, 1))
    # The same insertion in several places (a batchnorm after every conv) reads as one count.
    totals: dict[str, int] = {}
    for edit, count in counted:
        totals[edit] = totals.get(edit, 0) + count
    return ", ".join(edit if count == 1 else f"{edit} x{count}" for edit, count in totals.items())


def in_points(metric: str, values: Sequence[float | None]) -> bool:
    """Accuracies on the 0-1 scale are shown in percent and their changes in points."""
    known = [v for v in values if v is not None and math.isfinite(v)]
    return "acc" in metric.lower() and all(0.0 <= v <= 1.0 for v in known)


def format_value(value: float | None, points: bool) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{100 * value:.2f}" if points else f"{value:.4f}"


def format_delta(value: float | None, previous: float | None, points: bool) -> str:
    """Signed change from ``previous`` to ``value``; ``-`` when either is missing."""
    if value is None or previous is None or not (math.isfinite(value) and math.isfinite(previous)):
        return "-"
    delta = value - previous
    return f"{100 * delta:+.2f}" if points else f"{delta:+.4f}"

"""Config and metrics as MLflow's flat key -> value pairs."""

from __future__ import annotations

import json
import math
import re
from typing import Any, Iterator, Mapping

# MLflow keys allow alphanumerics, _ - . space and /; a class named "a+b" must still log.
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. /]")
PARAM_VALUE_LIMIT = 6000


def safe_key(key: str) -> str:
    return _UNSAFE.sub("_", key)


def flatten_params(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"train": {"lr": 0.1}}`` -> ``{"train.lr": "0.1"}``; list items are indexed
    (``model.layers.0.type``), lists of plain values stay one JSON value."""
    out: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_params(value, f"{name}."))
        elif isinstance(value, list) and any(isinstance(v, (Mapping, list)) for v in value):
            out.update(flatten_params({str(i): v for i, v in enumerate(value)}, f"{name}."))
        else:
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            out[safe_key(name)] = text[:PARAM_VALUE_LIMIT]
    return out


def numeric_leaves(tree: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    """Every finite number under ``tree`` as (dotted key, value); lists (the confusion matrix)
    and text are skipped."""
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from numeric_leaves(value, f"{name}.")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            if math.isfinite(value):
                yield safe_key(name), float(value)

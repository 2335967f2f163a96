"""Labels for unlabelled images as a CSV (a Kaggle submission): the one prediction writer.

``cnnlab predict RUN SOURCE`` (a saved run) and a run's ``predict:`` section (right after
training, into the run folder) both call :func:`predict_to_csv`. Images are decoded a chunk
at a time so a large test folder never sits in memory whole; the model's time is measured
apart from decoding, as report 001's "time taken for predicting" is.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from cnnlab.store import safe_output_path, write_csv


@dataclass
class PredictOutcome:
    out: Path
    count: int
    label_counts: dict[str, int]
    columns: list[str]
    seconds: float = 0.0  # the model's forward passes only
    decode_seconds: float = 0.0

    @property
    def images_per_s(self) -> float:
        return self.count / max(self.seconds, 1e-9)

    def record(self) -> dict:
        """What metrics.json keeps of it."""
        return {"file": self.out.name, "rows": self.count, "seconds": round(self.seconds, 4),
                "images_per_s": round(self.images_per_s, 1),
                "decode_seconds": round(self.decode_seconds, 4), "columns": self.columns,
                "label_counts": self.label_counts}


def predict_to_csv(classifier: torch.nn.Module, classes: list[str], in_shape: tuple[int, int, int],
                   source: Path, out: Path, *, batch_size: int = 1024, probabilities: bool = False,
                   tta: bool = False, id_column: str = "id", label_column: str = "label",
                   input_id_column: str = "id", input_path_column: str | None = None,
                   chunk: int = 2048) -> PredictOutcome:
    """Write ``<id_column>,<label_column>`` (with ``probabilities``, one column per class) for
    an image folder, one image or a CSV of ids and image paths."""
    from cnnlab.evaluate.inputs import decode_inputs, resolve_inputs
    from cnnlab.evaluate.predict import predict_with_tta

    out = safe_output_path(out)  # before any decoding: a refused output costs nothing
    inputs = resolve_inputs(source, id_column=input_id_column, path_column=input_path_column)
    # A class named like the id or label column would collide with those columns.
    prefix = "p_" if {id_column, label_column} & set(classes) else ""
    prob_columns = [f"{prefix}{name}" for name in classes] if probabilities else []
    rows: list[dict] = []
    seconds = decode_seconds = 0.0
    for start in range(0, len(inputs.paths), chunk):
        began = time.perf_counter()
        images = decode_inputs(inputs.paths[start:start + chunk], in_shape)
        decoded = time.perf_counter()
        probs = predict_with_tta(classifier, images, tta=tta, batch_size=batch_size)
        seconds += time.perf_counter() - decoded
        decode_seconds += decoded - began
        for offset, (best, p) in enumerate(zip(probs.argmax(dim=1).tolist(), probs.tolist())):
            row = {id_column: inputs.ids[start + offset], label_column: classes[best]}
            row.update({col: round(v, 6) for col, v in zip(prob_columns, p)})
            rows.append(row)
    columns = [id_column, label_column, *prob_columns]
    write_csv(out, rows, columns)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row[label_column]] = counts.get(row[label_column], 0) + 1
    return PredictOutcome(out, len(rows), counts, columns, seconds, decode_seconds)

"""What a report says about a run, computed from its history and metrics (pure functions).

The train/validation gap:

* accuracy gap = train accuracy - validation accuracy, per epoch;
* loss gap = validation loss - train loss, per epoch (train loss as logged, L2 included);
* a gap *opens* at the first epoch from which it stays above its threshold in every later
  epoch (``ACCURACY_GAP`` = 0.05, ``LOSS_GAP`` = 0.10); a gap that closes again before the
  last epoch has not opened. Train numbers are measured with augmentation and dropout on, as
  Keras logs them, so a small negative gap is normal early on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

ACCURACY_GAP = 0.05
LOSS_GAP = 0.10

Row = Mapping[str, float]


def _finite(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def gap_series(history: Sequence[Row], kind: str) -> list[tuple[int, float | None]]:
    """(epoch, gap) per epoch; ``kind`` is ``accuracy`` or ``loss``; None where not logged."""
    out = []
    for position, row in enumerate(history, start=1):
        epoch = int(_finite(row.get("epoch")) or position)
        if kind == "accuracy":
            train, val = _finite(row.get("accuracy")), _finite(row.get("val_accuracy"))
            gap = train - val if train is not None and val is not None else None
        elif kind == "loss":
            train, val = _finite(row.get("loss")), _finite(row.get("val_loss"))
            gap = val - train if train is not None and val is not None else None
        else:
            raise ValueError(f"kind must be accuracy or loss, got {kind!r}")
        out.append((epoch, gap))
    return out


def gap_opened_at(series: Sequence[tuple[int, float | None]], threshold: float) -> int | None:
    """First epoch from which every gap to the end is above ``threshold`` (None: never)."""
    opened = None
    for epoch, gap in series:
        if gap is not None and gap > threshold:
            if opened is None:
                opened = epoch
        else:
            opened = None
    return opened


@dataclass
class Gap:
    kind: str
    threshold: float
    opened_at: int | None
    at_best: float | None
    at_last: float | None
    last_epoch: int | None


def gap(history: Sequence[Row], kind: str, best_epoch: int | None) -> Gap:
    series = gap_series(history, kind)
    threshold = ACCURACY_GAP if kind == "accuracy" else LOSS_GAP
    by_epoch = dict(series)
    last_epoch, last = series[-1] if series else (None, None)
    return Gap(kind, threshold, gap_opened_at(series, threshold),
               by_epoch.get(best_epoch) if best_epoch is not None else None, last, last_epoch)


def lr_reductions(history: Sequence[Row]) -> list[tuple[int, float, float]]:
    """(epoch, old lr, new lr) for every epoch that started with a lower rate than the one before."""
    out = []
    previous = None
    for position, row in enumerate(history, start=1):
        lr = _finite(row.get("lr"))
        epoch = int(_finite(row.get("epoch")) or position)
        if lr is not None and previous is not None and lr < previous * (1 - 1e-9):
            out.append((epoch, previous, lr))
        if lr is not None:
            previous = lr
    return out


@dataclass
class ClassDelta:
    name: str
    support: int | None
    f1: float | None
    other_f1: float | None

    @property
    def delta(self) -> float | None:
        if self.f1 is None or self.other_f1 is None:
            return None
        return self.f1 - self.other_f1


def f1_deltas(per_class: Mapping[str, Mapping], other: Mapping[str, Mapping]) -> list[ClassDelta]:
    """Per-class F1 of this run against another, largest gain first; classes only one run
    has come last with no delta."""
    names = list(per_class) + [n for n in other if n not in per_class]
    rows = [ClassDelta(n, (per_class.get(n) or other.get(n) or {}).get("support"),
                       (per_class.get(n) or {}).get("f1"), (other.get(n) or {}).get("f1"))
            for n in names]
    return sorted(rows, key=lambda r: (r.delta is None, -(r.delta or 0.0), r.name))


def observations(metrics: Mapping, history: Sequence[Row], monitor: str | None,
                 split: str) -> list[str]:
    """Sentences for the report's observations, each computed from the recorded numbers."""
    notes: list[str] = []
    best = metrics.get("best_epoch")
    epochs = metrics.get("epochs_run") or len(history)
    if best is not None and monitor:
        value = next((_finite(r.get(monitor)) for r in history
                      if int(_finite(r.get("epoch")) or 0) == int(best)), None)
        shown = f" ({monitor} {value:.4f})" if value is not None else ""
        notes.append(f"Best epoch: {best} of {epochs}{shown}; its weights are the ones evaluated.")
    elif epochs:
        notes.append(f"No best-epoch selection: the weights of the last epoch ({epochs}) are "
                     "evaluated.")
    if metrics.get("stop_reason"):
        notes.append(f"Training stopped: {metrics['stop_reason']}.")
    for kind in ("accuracy", "loss"):
        g = gap(history, kind, best)
        if g.last_epoch is None or g.at_last is None:
            continue
        what = ("train accuracy - validation accuracy" if kind == "accuracy"
                else "validation loss - train loss")
        if g.opened_at is not None:
            text = (f"The {kind} gap ({what}) opened at epoch {g.opened_at}: above "
                    f"{g.threshold:g} from then to the last epoch")
        else:
            text = f"No lasting {kind} gap ({what} above {g.threshold:g} to the end)"
        details = []
        if g.at_best is not None:
            details.append(f"{g.at_best:+.4f} at the best epoch")
        details.append(f"{g.at_last:+.4f} at epoch {g.last_epoch}")
        notes.append(f"{text} ({', '.join(details)}).")
    for epoch, old, new in lr_reductions(history):
        notes.append(f"The learning rate dropped from {old:.3g} to {new:.3g} at epoch {epoch}.")
    scored = metrics.get(split)
    if isinstance(scored, Mapping) and scored.get("per_class"):
        per_class = scored["per_class"]
        worst = min(per_class.items(), key=lambda kv: (kv[1]["f1"], kv[0]))
        best_class = max(per_class.items(), key=lambda kv: (kv[1]["f1"], kv[0]))
        notes.append(f"On {split}: accuracy {scored['accuracy']:.4f}, macro F1 "
                     f"{scored['macro']['f1']:.4f}; the weakest class is {worst[0]} (F1 "
                     f"{worst[1]['f1']:.4f}, {worst[1]['support']} images), the strongest "
                     f"{best_class[0]} (F1 {best_class[1]['f1']:.4f}).")
        confusion = scored.get("confusion_matrix")
        names = list(per_class)
        if confusion:
            pairs = [(count, names[i], names[j]) for i, row in enumerate(confusion)
                     for j, count in enumerate(row) if i != j and count > 0]
            if pairs:
                count, true, predicted = max(pairs, key=lambda p: (p[0], p[1], p[2]))
                notes.append(f"The most frequent confusion is {true} predicted as {predicted} "
                             f"({count} images).")
    return notes

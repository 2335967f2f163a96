"""A run's report page, in the shape of the users' report 000: configuration (architecture,
hyperparameters, callbacks, data, augmentation), results (confusion matrix, per-class table
by class size, training curves, the hardest test images) and observations computed from the
recorded numbers, optionally against another run.

``write_report(run_dir)`` writes ``report.md`` (images linked beside it) and a self-contained
``report.html`` into the run folder. For the gallery of hardest images it reloads the saved
weights and rebuilds the run's data (its split is seeded, so it is the same split); it also
writes ``predictions.csv`` (one row per image of that split) and ``hard_examples.png``.
Where the data can no longer be read, the report says so and goes on without the gallery.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from cnnlab.errors import CnnlabError
from cnnlab.report.document import (Block, Bullets, Code, Heading, Image, Paragraph, TableBlock,
                                    render_html, render_markdown)
from cnnlab.report.observations import ACCURACY_GAP, LOSS_GAP, f1_deltas, observations
from cnnlab.report.wide import wide_block
from cnnlab.store import open_run, read_history, write_csv, write_text
from cnnlab.store.catalog import RunRecord, read_run

HARD_EXAMPLES = 16
PREDICTION_CSV_FIELDS = ("split", "id", "true", "predicted", "confidence", "loss")


@dataclass
class ReportResult:
    markdown: Path
    html: Path
    notes: list[str] = field(default_factory=list)


@dataclass
class HardExamples:
    path: Path
    split: str
    rows: list[dict]


def write_report(run_dir: Path, *, against: Path | None = None, hard_examples: int = HARD_EXAMPLES,
                 say: Callable[[str], None] = lambda text: None) -> ReportResult:
    run = read_run(open_run(run_dir))
    other = read_run(open_run(against)) if against is not None else None
    notes: list[str] = []
    split = primary_split(run.metrics)
    hard = None
    if hard_examples > 0 and split is not None and (run.run_dir / "model.safetensors").is_file():
        try:
            hard = find_hard_examples(run, split, hard_examples, notes)
        except CnnlabError as exc:
            notes.append(f"The gallery of hardest images was left out: {exc}")
    blocks = build_blocks(run, split, hard, other, notes)
    title = f"{run.name} ({run.run_id})"
    md = write_text(run.run_dir / "report.md", render_markdown(title, blocks, run.run_dir))
    page = write_text(run.run_dir / "report.html", render_html(title, blocks))
    return ReportResult(md, page, notes)


def primary_split(metrics: Mapping) -> str | None:
    for split in ("test", "val"):
        if isinstance(metrics.get(split), Mapping) and "per_class" in metrics[split]:
            return split
    return None


# ------------------------------------------------------------------------ hard examples

def find_hard_examples(run: RunRecord, split: str, k: int, notes: list[str]) -> HardExamples:
    """Reload the weights and the data, score ``split`` image by image, draw the ``k`` worst."""
    from cnnlab.data import build_data
    from cnnlab.evaluate import predict_probs
    from cnnlab.evaluate.predict import hardest, prediction_rows
    from cnnlab.report.gallery import plot_gallery
    from cnnlab.store.artifact import load_run

    saved = load_run(run.run_dir)
    data = build_data(saved.cfg.data)
    part = data.splits().get(split)
    if part is None or len(part) == 0:
        raise CnnlabError(f"the rebuilt data has no {split} split.")
    if data.classes != saved.classes or data.in_shape != tuple(saved.in_shape):
        raise CnnlabError(f"the data at {saved.cfg.data.root} no longer matches the run (classes "
                          "or image shape changed).")
    # Scored as the run scored it (same batch layout and test-time augmentation), so the
    # per-image numbers add up to the recorded ones.
    probs, _ = predict_probs(saved.classifier, part.images, batch_size=saved.cfg.eval.batch_size,
                             channels_last=saved.cfg.train.channels_last,
                             tta=getattr(saved.cfg.eval, "tta", "none"))
    rows = prediction_rows([str(i) for i in range(len(part))], probs, part.labels, saved.classes)
    write_csv(run.run_dir / "predictions.csv", [{"split": split, **r} for r in rows],
              PREDICTION_CSV_FIELDS)
    recorded = run.metrics.get(split, {}).get("accuracy")
    accuracy = float((probs.argmax(dim=1) == part.labels).float().mean())
    if recorded is not None and abs(accuracy - float(recorded)) > 1e-6:
        notes.append(f"The reloaded model scores {accuracy:.4f} on the rebuilt {split} split where "
                     f"{recorded:.4f} was recorded: the data on disk has changed since the run.")
    order = hardest(probs, part.labels, k)
    picked = [rows[i] for i in order]
    captions = [f"#{r['id']} true {r['true']}\npred {r['predicted']} ({r['confidence']:.2f})\n"
                f"loss {r['loss']:.2f}" for r in picked]
    path = plot_gallery(part.images[order], captions, run.run_dir / "hard_examples.png",
                        wrong=[r["true"] != r["predicted"] for r in picked],
                        title=f"{len(picked)} {split} images with the highest loss")
    return HardExamples(path, split, picked)


# ------------------------------------------------------------------------------ blocks

def build_blocks(run: RunRecord, split: str | None, hard: HardExamples | None,
                 other: RunRecord | None, notes: list[str]) -> list[Block]:
    cfg, metrics, data = run.config, run.metrics, run.data
    train = cfg.get("train") or {}
    blocks: list[Block] = [Paragraph(_header(run))]
    if cfg.get("description"):
        blocks.append(Paragraph(str(cfg["description"])))

    blocks.append(Heading(1, "Configuration"))
    blocks.append(Heading(2, "Model architecture"))
    params = metrics.get("params") or {}
    model = cfg.get("model") or {}
    if params:
        blocks.append(Paragraph(f"Model {model.get('name', '?')}: {params.get('total', 0):,} "
                                f"parameters ({params.get('trainable', 0):,} trainable, "
                                f"{params.get('non_trainable', 0):,} non-trainable)."))
    summary = run.run_dir / "summary.txt"
    blocks.append(Code(summary.read_text(encoding="utf-8")) if summary.is_file()
                  else Paragraph("summary.txt is missing."))
    blocks.append(Heading(2, "Hyperparameters"))
    blocks.append(TableBlock(["setting", "value"], hyperparameters(train)))
    blocks.append(Heading(2, "Callbacks"))
    blocks.append(Bullets(callbacks(train)))
    blocks.append(Heading(2, "Data"))
    blocks.append(TableBlock(["setting", "value"], data_rows(cfg.get("data") or {}, data)))
    blocks.append(Heading(2, "Augmentation"))
    augment = cfg.get("augment") or []
    blocks.append(Bullets([_call(spec) for spec in augment]) if augment
                  else Paragraph("None: training images are used as they are."))

    blocks.append(Heading(1, "Results"))
    blocks.append(Heading(2, "Confusion matrix"))
    blocks.append(Image(run.run_dir / "confusion_matrix.png", "confusion matrix",
                        f"Rows: true class, columns: predicted class ({split or 'no'} split)."))
    blocks.append(Heading(2, f"Metrics ({split})" if split else "Metrics"))
    if split:
        blocks.append(per_class_block(metrics[split]))
        blocks.append(Heading(2, f"Metrics, wide ({split}; report 000 layout)"))
        blocks.append(wide_block(metrics[split]))
        other_split = "val" if split == "test" else None
        if other_split and isinstance(metrics.get(other_split), Mapping):
            scored = metrics[other_split]
            blocks.append(Paragraph(f"Validation: accuracy {scored['accuracy']:.4f}, log loss "
                                    f"{scored['log_loss']:.4f}, macro F1 {scored['macro']['f1']:.4f}."))
    else:
        blocks.append(Paragraph(f"No evaluated split: the run's status is {run.status}."))
    blocks.append(Heading(2, "Training"))
    blocks.append(Image(run.run_dir / "curves.png", "training curves",
                        "Loss, accuracy and learning rate per epoch; the dashed line marks the "
                        "epoch of the lowest validation loss."))
    if hard is not None:
        blocks.append(Heading(2, f"Hardest {hard.split} images"))
        blocks.append(Image(hard.path, "hardest images",
                            "Highest per-image loss first; red captions are misclassified. "
                            "# is the image's index in the split (predictions.csv)."))
        blocks.append(TableBlock(["#", "true", "predicted", "confidence", "loss"],
                                 [[r["id"], r["true"], r["predicted"], f"{r['confidence']:.4f}",
                                   f"{r['loss']:.4f}"] for r in hard.rows], numeric={0, 3, 4}))

    blocks.append(Heading(1, "Observations"))
    monitor = (train.get("checkpoint") or {}).get("monitor")
    history = read_history(run.run_dir)
    found = observations(metrics, history, monitor, split or "val")
    blocks.append(Bullets(found + notes) if found or notes else Paragraph("No history recorded."))
    blocks.append(Paragraph(f"Gap rule: the accuracy gap (train - validation) or the loss gap "
                            f"(validation - train) opens at the first epoch from which it stays "
                            f"above {ACCURACY_GAP:g} (accuracy) or {LOSS_GAP:g} (loss) in every "
                            "later epoch."))
    if other is not None:
        blocks.extend(against_blocks(run, other, split))
    return blocks


def _header(run: RunRecord) -> str:
    m = run.metrics
    parts = [f"Run folder {run.run_dir}", f"status {run.status}"]
    if m.get("epochs_run") is not None:
        parts.append(f"{m['epochs_run']} epochs")
    if m.get("train_seconds") is not None:
        parts.append(f"{m['train_seconds']:.1f} s training")
    if m.get("predict_images_per_s"):
        parts.append(f"{m['predict_images_per_s']:,.0f} images/s predicting")
    if m.get("error"):
        parts.append(f"error: {m['error']}")
    if m.get("group"):
        parts.append(f"seed {m.get('seed')} of group {m['group']}")
    versions = m.get("versions") or {}
    if versions.get("torch"):
        parts.append(f"torch {versions['torch']}")
    if m.get("git_sha"):
        parts.append(f"cnnlab {m['git_sha'][:12]}")
    return "; ".join(parts) + "."


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if value is None:
        return "none"
    if isinstance(value, Mapping):  # a setting inside a setting: tagged -> call, else a map
        tagged = any(isinstance(value.get(tag), str) for tag in ("type", "name"))
        return _call(value) if tagged else "{" + ", ".join(
            f"{k}: {_fmt(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def _call(spec: Mapping | None, name_key: str = "type", name: str | None = None,
          fallback: str = "") -> str:
    """``{"type": "zoom", "factor": 0.2}`` -> ``zoom(factor=0.2)``.

    The label is ``name`` if given, else the spec's own tag (``name_key``, ``type`` or
    ``name``: ``schedule: {name: linear, ...}`` -> ``linear(...)``), else ``fallback`` (the
    setting's key: ``lookahead: {k: 5}`` -> ``lookahead(k=5)``). Never an unnamed ``?(...)``.
    """
    if not spec:
        return "none"
    spec = dict(spec)
    if name is None:
        name = fallback
        for key in (name_key, "type", "name"):
            if isinstance(spec.get(key), str):
                name = spec.pop(key)
                break
    args = ", ".join(f"{k}={_fmt(v)}" for k, v in spec.items())
    return f"{name}({args})"


def hyperparameters(train: Mapping) -> list[list[str]]:
    rows = [["batch size", _fmt(train.get("batch_size"))], ["epochs", _fmt(train.get("epochs"))],
            ["optimizer", _fmt(train.get("optimizer"))], ["learning rate", _fmt(train.get("lr"))]]
    if train.get("optimizer") in ("sgd", "rmsprop", "muon"):
        rows.append(["momentum", _fmt(train.get("momentum"))])
        if train.get("optimizer") in ("sgd", "muon"):
            rows.append(["nesterov", _fmt(train.get("nesterov"))])
    if train.get("optimizer") == "muon":
        rows.append(["muon (conv filters)", _call(train.get("muon"), name="Muon")])
    rows.append(["weight decay", _fmt(train.get("weight_decay"))])
    rows.append(["loss", _call(train.get("loss"), "name")])
    weights = train.get("class_weights") or {}
    if weights.get("mode", "none") != "none" or weights.get("multipliers"):
        rows.append(["class weights", _call(weights, "mode")])
    for key in ("seed", "precision", "device"):
        if key in train:
            rows.append([key, _fmt(train[key])])
    known = {"batch_size", "epochs", "optimizer", "lr", "momentum", "nesterov", "weight_decay",
             "loss", "class_weights", "seed", "precision", "device", "checkpoint", "early_stopping",
             "reduce_lr_on_plateau", "terminate_on_nan", "channels_last", "threads", "progress_bar",
             "muon"}
    for key, value in train.items():  # settings added later still show up
        if key not in known:
            rows.append([key.replace("_", " "), _call(value, fallback=key)
                         if isinstance(value, dict) else _fmt(value)])
    return rows


def callbacks(train: Mapping) -> list[str]:
    items = []
    checkpoint = train.get("checkpoint")
    items.append(f"ModelCheckpoint(monitor={checkpoint.get('monitor')}, mode={checkpoint.get('mode')}, "
                 "save_best_only=True): the best epoch's weights are evaluated" if checkpoint
                 else "No ModelCheckpoint: the last epoch's weights are evaluated")
    for key, name in (("reduce_lr_on_plateau", "ReduceLROnPlateau"), ("early_stopping", "EarlyStopping")):
        spec = train.get(key)
        items.append(_call(spec, name=name) if spec else f"No {name}")
    items.append("TerminateOnNaN" if train.get("terminate_on_nan", True) else "No TerminateOnNaN")
    return items


def data_rows(cfg: Mapping, info: Mapping) -> list[list[str]]:
    rows = [["dataset", _fmt(cfg.get("name"))]]
    if cfg.get("root"):
        rows.append(["root", str(cfg["root"])])
    classes = info.get("classes") or cfg.get("classes") or []
    if classes:
        shown = ", ".join(map(str, classes[:20])) + (f", ... ({len(classes)} in all)"
                                                      if len(classes) > 20 else "")
        rows.append(["classes", f"{len(classes)}: {shown}"])
    shape = info.get("in_shape")
    if shape:
        rows.append(["input shape (H, W, C)", f"{shape[1]}x{shape[2]}x{shape[0]}"])
    rows.append(["normalization", _fmt(cfg.get("normalization"))])
    sizes = info.get("sizes") or {}
    if sizes:
        rows.append(["split sizes", ", ".join(f"{k} {v:,}" for k, v in sizes.items())])
    for key, label in (("val_from", "validation"), ("test_from", "test")):
        if info.get(key):
            rows.append([label, str(info[key])])
    rows.append(["split seed", _fmt(cfg.get("split_seed"))])
    if cfg.get("max_per_class"):
        rows.append(["max per class", _fmt(cfg["max_per_class"])])
    return rows


def per_class_block(scored: Mapping) -> TableBlock:
    per_class = sorted(scored["per_class"].items(), key=lambda kv: -int(kv[1]["support"]))
    rows = [[name, str(r["support"]), f"{r['recall']:.4f}", f"{r['precision']:.4f}",
             f"{r['specificity']:.4f}", f"{r['f1']:.4f}"] for name, r in per_class]
    n = str(scored.get("n", sum(int(r["support"]) for _, r in per_class)))
    for label, key in (("macro avg", "macro"), ("weighted avg", "weighted")):
        avg = scored[key]
        rows.append([label, n, f"{avg['recall']:.4f}", f"{avg['precision']:.4f}",
                     f"{avg['specificity']:.4f}", f"{avg['f1']:.4f}"])
    rows.append(["accuracy", n, "", "", "", f"{scored['accuracy']:.4f}"])
    return TableBlock(["class", "size", "recall", "precision", "specificity", "F1"], rows,
                      numeric={1, 2, 3, 4, 5}, caption=f"Classes by size, largest first. "
                      f"Log loss {scored['log_loss']:.4f}.")


def against_blocks(run: RunRecord, other: RunRecord, split: str | None) -> list[Block]:
    blocks: list[Block] = [Heading(1, f"Against {other.name} ({other.run_id})")]
    if split is None or not isinstance(other.metrics.get(split), Mapping):
        blocks.append(Paragraph(f"The other run has no {split or 'evaluated'} split to compare."))
        return blocks
    mine, theirs = run.metrics[split], other.metrics[split]
    blocks.append(Paragraph(
        f"On {split}: accuracy {mine['accuracy']:.4f} vs {theirs['accuracy']:.4f} "
        f"({mine['accuracy'] - theirs['accuracy']:+.4f}), macro F1 {mine['macro']['f1']:.4f} vs "
        f"{theirs['macro']['f1']:.4f} ({mine['macro']['f1'] - theirs['macro']['f1']:+.4f}), log loss "
        f"{mine['log_loss']:.4f} vs {theirs['log_loss']:.4f}. One run each: for whether a "
        "difference is real, repeat both with --seeds and use cnnlab compare --baseline."))
    deltas = f1_deltas(mine["per_class"], theirs["per_class"])
    rows = [[d.name, _fmt(d.support), _opt(d.f1), _opt(d.other_f1),
             f"{d.delta:+.4f}" if d.delta is not None else "-"] for d in deltas]
    blocks.append(TableBlock(["class", "size", "F1 (this run)", f"F1 ({other.name})", "change"],
                             rows, numeric={1, 2, 3, 4},
                             caption="Per-class F1 changes, largest gain first."))
    changed = [d for d in deltas if d.delta is not None and abs(d.delta) >= 0.05]
    if changed:
        gains = [f"{d.name} ({d.delta:+.3f})" for d in changed if d.delta > 0]
        losses = [f"{d.name} ({d.delta:+.3f})" for d in changed if d.delta < 0]
        items = []
        if gains:
            items.append("F1 rose by 0.05 or more for " + ", ".join(gains) + ".")
        if losses:
            items.append("F1 fell by 0.05 or more for " + ", ".join(losses) + ".")
        blocks.append(Bullets(items))
    return blocks


def _opt(value: float | None) -> str:
    return f"{value:.4f}" if value is not None else "-"

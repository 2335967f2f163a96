#!/usr/bin/env python3
"""Keras parity: cnnlab and the shared Keras peer trained alike, seeds side by side.

For report 002 step 7 (recipes/report002/07_dropout_ramp.yaml, peer model ``step7``) and report
003's net (recipes/report003/final_vgg.yaml, peer model ``vgg3``): both sides train on the same
images and the same stratified train/val split, for the same fixed epochs, batch size (the
recipe's), optimizer (Adam 1e-3) and thread count, once per seed. Prints one JSON line per run,
one per model with mean ± std of held-out accuracy, Welch's p (cnnlab vs Keras) and seconds per
epoch, then a Markdown table to paste into docs/performance.md (nothing is written into docs/).

Parity overrides on the cnnlab side (the peer trains neither way): no early stopping, no LR
plateau, last epoch's weights (no best checkpoint); for ``vgg3`` also plain cross-entropy and no
class weights (final_vgg.yaml uses focal loss + balanced class weights; the peer compiles with
sparse categorical cross-entropy). Step 7 rescales by 1/255 on both sides (cnnlab's
``normalization: rescale``; the peer divides outside the model).

    nice -n 19 python bench/keras_parity.py --keras-python /tmp/keras-peer/bin/python --quick

The Keras side runs bench/keras_parity_runner.py in the Keras virtual environment; runs are
interleaved (seed 0 cnnlab, seed 0 Keras, seed 1 ...) so drift of a shared host hits both sides.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "datasets" / "cifar10" / "train"
PEER = REPO.parent / "shared" / "bench" / "keras_peer.py"
RUNNER = Path(__file__).resolve().parent / "keras_parity_runner.py"
RECIPES = {"step7": REPO / "recipes" / "report002" / "07_dropout_ramp.yaml",
           "vgg3": REPO / "recipes" / "report003" / "final_vgg.yaml"}
# What makes each recipe train as the peer does (see the module docstring).
PARITY = {
    "step7": ["train.early_stopping=null", "train.reduce_lr_on_plateau=null",
              "train.checkpoint=null"],
    "vgg3": ["train.early_stopping=null", "train.reduce_lr_on_plateau=null",
             "train.checkpoint=null", "train.loss={name: cross_entropy}",
             "train.class_weights={mode: none}"],
}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


# ------------------------------------------------------------------------------ the split

def list_class_files(root: Path) -> tuple[list[str], list[Path], np.ndarray]:
    """Classes (sorted folder names), every image file and its label index."""
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files, labels = [], []
    for label, name in enumerate(classes):
        found = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        files += found
        labels += [label] * len(found)
    if not files:
        raise SystemExit(f"{root} holds no class folders of images")
    return classes, files, np.asarray(labels, dtype=np.int64)


def make_split(labels: np.ndarray, per_class: int | None, val_fraction: float, seed: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices into ``labels``: a seeded per-class subset, then a stratified split,
    both with cnnlab's own selection functions."""
    from cnnlab.data.select import select_per_class, stratified_split

    keep = select_per_class(labels, per_class, seed)
    kept, held = stratified_split(labels[keep], val_fraction, seed, "validation")
    return keep[kept], keep[held]


def materialise(out: Path, classes: list[str], files: list[Path], labels: np.ndarray,
                parts: dict[str, np.ndarray]) -> Path:
    """``out/<part>/<class>/<file>`` symlinks to the originals (``out`` is replaced)."""
    if out.exists():
        shutil.rmtree(out)
    for part, idx in parts.items():
        for name in classes:
            (out / part / name).mkdir(parents=True)
        for i in idx:
            source = files[i].resolve()
            (out / part / classes[labels[i]] / source.name).symlink_to(source)
    return out


# ------------------------------------------------------------------------------ the runs

def cnnlab_overrides(model: str, root: Path, epochs: int, seed: int, threads: int,
                     work: Path) -> list[str]:
    return ["data.name=imagefolder", f"data.root={root}", "data.max_per_class=null",
            "data.test_split=0.0", f"data.cache_dir={work / 'cache'}", f"train.epochs={epochs}",
            f"train.seed={seed}", f"train.threads={threads}", "train.progress_bar=false",
            "eval.splits=[val]", *PARITY[model]]


def steady_seconds(epoch_seconds: list[float]) -> float:
    """Seconds per epoch without the first epoch (warm-up, graph tracing) where there are more."""
    rest = epoch_seconds[1:] or epoch_seconds
    return sum(rest) / len(rest)


def read_cnnlab_run(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    with (run_dir / "history.csv").open() as handle:
        seconds = [float(row["seconds"]) for row in csv.DictReader(handle)]
    return {"val_accuracy": float(metrics["val"]["accuracy"]),
            "epoch_seconds": [round(s, 3) for s in seconds]}


def run_cnnlab(model: str, root: Path, epochs: int, seed: int, threads: int, work: Path) -> dict:
    runs_dir = work / "runs" / f"{model}-seed{seed}"
    if runs_dir.exists():
        shutil.rmtree(runs_dir)
    command = [sys.executable, "-m", "cnnlab", "run", str(RECIPES[model]),
               "--runs-dir", str(runs_dir)]
    for override in cnnlab_overrides(model, root, epochs, seed, threads, work):
        command += ["--set", override]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    wall = time.perf_counter() - started
    (metrics,) = runs_dir.rglob("metrics.json")
    return {"side": "cnnlab", "model": model, "seed": seed, **read_cnnlab_run(metrics.parent),
            "wall_seconds": round(wall, 1)}


def run_keras(python: str, model: str, root: Path, epochs: int, batch: int, seed: int,
              threads: int) -> dict:
    command = [python, str(RUNNER), "--peer", str(PEER), "--model", model, "--root", str(root),
               "--epochs", str(epochs), "--batch", str(batch), "--seed", str(seed),
               "--threads", str(threads)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return {**json.loads(done.stdout.strip().splitlines()[-1]),
            "wall_seconds": round(time.perf_counter() - started, 1)}


# ------------------------------------------------------------------------------ the summary

def summarise(model: str, runs: list[dict]) -> dict:
    """Per side: mean ± std of accuracy and steady seconds per epoch; Welch cnnlab vs Keras."""
    from cnnlab.report.significance import mean_std, welch

    out: dict = {"model": model}
    acc = {}
    for side in ("cnnlab", "keras"):
        mine = [r for r in runs if r["side"] == side]
        acc[side] = [r["val_accuracy"] for r in mine]
        secs = [steady_seconds(r["epoch_seconds"]) for r in mine]
        out[side] = {"seeds": [r["seed"] for r in mine], "val_accuracy": acc[side],
                     "accuracy_mean_std": _rounded(mean_std(acc[side]), 4),
                     "epoch_seconds_mean_std": _rounded(mean_std(secs), 2)}
    verdict = welch(acc["cnnlab"], acc["keras"])
    out["delta_accuracy"] = round(verdict.delta, 4) if math.isfinite(verdict.delta) else None
    out["welch_p"] = None if verdict.p_value is None else round(verdict.p_value, 4)
    out["verdict"] = verdict.verdict + (f" ({verdict.reason})" if verdict.reason else "")
    cn, ke = out["cnnlab"]["epoch_seconds_mean_std"][0], out["keras"]["epoch_seconds_mean_std"][0]
    out["keras_over_cnnlab_epoch_seconds"] = round(ke / cn, 3) if cn and ke else None
    return out


def _rounded(pair: tuple[float, float], digits: int) -> list[float | None]:
    return [round(v, digits) if math.isfinite(v) else None for v in pair]


def _pm(pair: list[float | None], scale: float = 1.0, digits: int = 2) -> str:
    mean, std = pair
    if mean is None:
        return "n/a"
    return f"{mean * scale:.{digits}f}" + ("" if std is None else f" ± {std * scale:.{digits}f}")


def markdown_table(summaries: list[dict], setup: dict) -> str:
    lines = [
        f"Keras parity: {setup['train_images']} train / {setup['val_images']} val images "
        f"({setup['per_class']} per class, stratified, split seed {setup['split_seed']}), "
        f"{setup['epochs']} epoch(s), batch {setup['batch']}, Adam 1e-3, {setup['threads']} "
        f"threads a side, {setup['peer']}. cnnlab with parity overrides: no early stopping, no "
        "LR plateau, last epoch's weights; vgg3 also plain cross-entropy without class weights "
        "(final_vgg.yaml: focal loss + class weights). Seconds per epoch include the validation "
        "pass and leave out the first epoch where there are more.",
        "",
        "| Model | Side | Seeds | Val accuracy % (mean ± std) | s/epoch (mean ± std) "
        "| Δ acc. (cnnlab − Keras), Welch p | Keras s / cnnlab s |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        delta = "n/a" if s["delta_accuracy"] is None else f"{s['delta_accuracy'] * 100:+.2f} pts"
        # The reason of "cannot judge" (too few seeds) stays in the JSON line, out of the table.
        p = f"p = {s['welch_p']:.3g}" if s["welch_p"] is not None else s["verdict"].split(" (")[0]
        ratio = "n/a" if s["keras_over_cnnlab_epoch_seconds"] is None else \
            f"{s['keras_over_cnnlab_epoch_seconds']:.2f}"
        for side, label in (("cnnlab", "cnnlab"), ("keras", "Keras")):
            row = s[side]
            lines.append(
                f"| {s['model']} | {label} | {len(row['seeds'])} "
                f"| {_pm(row['accuracy_mean_std'], 100)} | {_pm(row['epoch_seconds_mean_std'])} "
                + (f"| {delta}, {p} | {ratio} |" if side == "cnnlab" else "| | |"))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keras-python", required=True, help="python of the Keras venv")
    parser.add_argument("--models", default="step7,vgg3")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--per-class", type=int, default=1000)
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "keras_parity")
    parser.add_argument("--quick", action="store_true", help="1 seed, 1 epoch, 20 per class")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.epochs, args.per_class = "0", 1, 20
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(RECIPES))
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {sorted(RECIPES)}")
    seeds = [int(s) for s in args.seeds.split(",")]

    from cnnlab.config import load_config

    classes, files, labels = list_class_files(args.data.resolve())
    train_idx, val_idx = make_split(labels, args.per_class, args.val_fraction, args.split_seed)
    work = args.work.resolve()
    root = materialise(work / "data", classes, files, labels, {"train": train_idx, "val": val_idx})
    summaries, peer = [], "Keras"
    for model in models:
        batch = load_config(RECIPES[model]).train.batch_size
        runs = []
        for seed in seeds:  # interleaved: drift of a shared host hits both sides alike
            for run in (lambda: run_cnnlab(model, root, args.epochs, seed, args.threads, work),
                        lambda: run_keras(args.keras_python, model, root, args.epochs, batch,
                                          seed, args.threads)):
                result = run()
                print(json.dumps(result), flush=True)
                runs.append(result)
                peer = f"{result['peer']} (TF {result['tensorflow']})" if "peer" in result else peer
        summary = {**summarise(model, runs), "batch": batch}
        print(json.dumps({"summary": summary}), flush=True)
        summaries.append(summary)
    setup = {"train_images": len(train_idx), "val_images": len(val_idx),
             "per_class": args.per_class, "split_seed": args.split_seed, "epochs": args.epochs,
             "batch": "/".join(sorted({str(s["batch"]) for s in summaries})), "threads": args.threads, "peer": peer}
    print()
    print(markdown_table(summaries, setup))
    return 0


if __name__ == "__main__":
    sys.exit(main())

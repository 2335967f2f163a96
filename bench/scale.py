#!/usr/bin/env python3
"""Scale-out figures for docs/scale.md: DDP 2 processes vs 1, and the cost of tracking.

1. Report 002's step-7 net (recipes/report002/07_dropout_ramp.yaml), one epoch on a subset of
   the shared CIFAR-10 copy (``--per-class`` images per class, 10% held out), trained by
   ``cnnlab run`` with ``train.devices`` 1 and 2 (CPU: gloo, cores/N threads each): training
   images/s of the epoch (history.csv's seconds) and the held-out accuracy after it.
2. Logging overhead: the same digits run of ``--overhead-epochs`` epochs with tracking off, and
   with MLflow (``--mlflow``, default a SQLite store in a temporary folder) plus TensorBoard on:
   wall seconds of each ``cnnlab run``.

Figures are printed as one JSON line and appended to the "Measured" section of docs/scale.md
(``--out``). ``--tiny`` runs everything on digits in seconds (what the test does).

    .venv/bin/python bench/scale.py                     # the full measurement (minutes)
    .venv/bin/python bench/scale.py --tiny --out /tmp/scale.md
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "datasets" / "cifar10" / "train"
STEP7 = REPO / "recipes" / "report002" / "07_dropout_ramp.yaml"
DOC = REPO / "docs" / "scale.md"


def cnnlab_run(experiment: Path, overrides: list[str], runs_dir: Path) -> tuple[Path, float]:
    """``python -m cnnlab run`` (a subprocess: DDP's launcher re-executes the command line);
    returns the run folder and the command's wall seconds."""
    command = [sys.executable, "-m", "cnnlab", "run", str(experiment), "--runs-dir", str(runs_dir)]
    for override in overrides:
        command += ["--set", override]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    (metrics,) = sorted(runs_dir.rglob("metrics.json"), key=lambda p: p.stat().st_mtime)[-1:]
    return metrics.parent, seconds


def ddp_figures(args, tmp: Path) -> dict:
    data = (["data.name=digits", f"data.max_per_class={args.per_class}"] if args.tiny else
            ["data.name=imagefolder", f"data.root={args.data}",
             f"data.max_per_class={args.per_class}"])
    # Keras's BatchNorm momentum 0.99 (the recipe's) leaves running statistics near their
    # initial values after one short epoch, so held-out accuracy would read chance either way.
    data += [f"model.layers.{i}.batchnorm.momentum=0.9" for i in (1, 3, 7, 9, 13, 15)]
    out = {"batchnorm_momentum": 0.9}
    for devices in (1, 2):
        run_dir, wall = cnnlab_run(STEP7, [*data, "data.val_split=0.1", "data.test_split=0.0",
                                           "train.epochs=1", "train.progress_bar=false",
                                           f"train.devices={devices}", "eval.splits=[val]"],
                                   tmp / f"ddp{devices}")
        metrics = json.loads((run_dir / "metrics.json").read_text())
        described = json.loads((run_dir / "data.json").read_text())
        history = (run_dir / "history.csv").read_text().splitlines()
        header, row = history[0].split(","), history[1].split(",")
        epoch_seconds = float(row[header.index("seconds")])
        n_train = _count(described, "train")
        out[f"devices_{devices}"] = {
            "train_images_per_s": round(n_train / epoch_seconds, 1),
            "epoch_seconds": round(epoch_seconds, 2), "wall_seconds": round(wall, 1),
            "val_accuracy": round(metrics["val"]["accuracy"], 4),
            "world_size": metrics["world_size"]}
    return out


def _count(described: dict, split: str) -> int:
    return int(described["sizes"][split])


def overhead_figures(args, tmp: Path) -> dict:
    experiment = tmp / "digits.yaml"
    experiment.write_text(json.dumps({
        "name": "bench/overhead", "data": {"name": "digits"},
        "model": {"layers": [{"conv2d": {"filters": 16, "padding": "same", "activation": "relu"}},
                             {"maxpool2d": {"pool": 2}}, {"flatten": {}}]},
        "train": {"epochs": args.overhead_epochs, "progress_bar": False}}))
    uri = args.mlflow or f"sqlite:///{tmp / 'mlflow.db'}"
    # A new SQLite store builds its schema on first use (seconds): not logging overhead.
    from mlflow.tracking import MlflowClient

    MlflowClient(uri).search_experiments()
    off_dir, off = cnnlab_run(experiment, [], tmp / "off")
    on_dir, on = cnnlab_run(experiment, [f"tracking.mlflow='{uri}'", "tracking.tensorboard=true"],
                            tmp / "on")
    state = json.loads((on_dir / "tracking.json").read_text())["mlflow"]["status"]
    return {"epochs": args.overhead_epochs, "off_seconds": round(off, 1),
            "on_seconds": round(on, 1), "overhead_seconds": round(on - off, 1),
            "mlflow": uri.split(":", 1)[0], "mlflow_status": state}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="CIFAR-10 class folders")
    parser.add_argument("--per-class", type=int, default=500, help="images per class (subset)")
    parser.add_argument("--overhead-epochs", type=int, default=30)
    parser.add_argument("--mlflow", help="tracking URI for the overhead run (default: SQLite "
                        "in a temporary folder)")
    parser.add_argument("--tiny", action="store_true", help="digits, 20 per class, 1 epoch")
    parser.add_argument("--parts", default="ddp,overhead",
                        help="comma-separated: ddp (1 vs 2 processes), overhead (tracking cost)")
    parser.add_argument("--out", type=Path, default=DOC, help="markdown file to append to")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if not parts or parts - {"ddp", "overhead"}:
        sys.exit(f"--parts takes ddp and/or overhead, not {args.parts!r}")
    if args.tiny:
        args.per_class, args.overhead_epochs = 20, 1
    elif not args.data.is_dir():
        sys.exit(f"{args.data} is absent (the shared CIFAR-10 copy); pass --data")
    sys.path.insert(0, str(REPO / "src"))
    from cnnlab.store.run import cpu_description

    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        figures = {"measured_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                   "machine": cpu_description(), "tiny": args.tiny}
        if "ddp" in parts:
            figures["ddp_step7_1_epoch"] = ddp_figures(args, tmp)
        if "overhead" in parts:
            figures["logging_overhead"] = overhead_figures(args, tmp)
    line = json.dumps(figures)
    print(line)
    with args.out.open("a") as doc:
        doc.write(f"\n- {figures['measured_at']}{' (tiny settings)' if args.tiny else ''}: "
                  f"`{line}`\n")


if __name__ == "__main__":
    main()

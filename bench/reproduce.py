#!/usr/bin/env python3
"""Re-run report recipes on the shared CIFAR-10 copy and write docs/reproduction.md.

Each recipe runs on ``../shared/datasets/cifar10/train`` as an image folder with a stratified
45,000/5,000 train/validation split (``split_seed`` 0); the 5,000 held-out images give the
cnnlab accuracy. Results accumulate in ``docs/reproduction.json`` (one row per recipe, the
newest run wins) and the Markdown table is generated from that file, never typed:

    .venv/bin/python bench/reproduce.py recipes/report002/01_two_conv.yaml ...
    .venv/bin/python bench/reproduce.py --max-epochs 30 recipes/report003/final_vgg.yaml
    .venv/bin/python bench/reproduce.py --table-only
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "cifar10" / "train"
RESULTS = REPO / "docs" / "reproduction.json"
# The same recipes on a re-encoded copy of the data (--reencoded), to measure what JPEG costs.
REENCODED_RESULTS = REPO / "docs" / "reproduction_reencoded.json"
TABLE = REPO / "docs" / "reproduction.md"


def recipe_facts(path: Path) -> dict:
    """Report, experiment and published accuracy (%) from the recipe's header comments."""
    from cnnlab.recipes import read_recipe

    recipe = read_recipe(path, path.parent.parent)
    report, _, experiment = recipe.citation.partition("), ")
    published = recipe.published_accuracy
    return {"published": round(100 * published, 2) if published is not None else None,
            "report": report.split(" (")[0], "experiment": experiment.rstrip(".") or path.stem}


def run_recipe(path: Path, data_root: Path, max_epochs: int | None, runs_dir: Path) -> dict:
    from cnnlab.config import load_config
    from cnnlab.pipeline import run_experiment

    overrides = ["data.name=imagefolder", f"data.root={data_root}", "data.val_split=0.1",
                 "data.test_split=0.0", "data.split_seed=0", *stand_in_of(path)[0],
                 "train.progress_bar=false", f"runs_dir={runs_dir}"]
    cfg = load_config(path, overrides)
    planned = cfg.train.epochs
    capped = max_epochs is not None and planned > max_epochs
    if capped:
        overrides.append(f"train.epochs={max_epochs}")
        cfg = load_config(path, overrides)
    started = time.perf_counter()
    outcome = run_experiment(cfg, say=lambda text: None)
    wall = time.perf_counter() - started
    return make_row(path, overrides, planned, capped, cfg.train.batch_size, outcome.run_dir,
                    outcome.metrics, wall)


def row_from_run(path: Path, run_dir: Path) -> dict:
    """The row of a run made by hand with reproduce's overrides (e.g. a long run in the
    background): its wall time is from the run folder's start stamp to metrics.json's last write."""
    import yaml

    from cnnlab.store import read_history, read_json

    metrics = read_json(run_dir / "metrics.json")
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    started = datetime.strptime(run_dir.name[:15], "%Y%m%d-%H%M%S").timestamp()
    span = (run_dir / "metrics.json").stat().st_mtime - started
    epoch_seconds = sum(h["seconds"] for h in read_history(run_dir))
    # A run resumed after an interruption spans idle gaps; its time is then its epochs' time.
    resumed = span > 1.2 * epoch_seconds + 600
    wall = epoch_seconds if resumed else span
    if resumed:
        metrics = {**metrics, "train_seconds": max(metrics["train_seconds"], epoch_seconds)}
    data = saved["data"]
    overrides = [f"data.name={data['name']}", f"data.root={data['root']}",
                 f"data.val_split={data['val_split']}", f"data.test_split={data['test_split']}",
                 f"data.split_seed={data['split_seed']}", *stand_in_of(path)[0]]
    epochs = saved["train"]["epochs"]
    row = make_row(path, overrides, epochs, False, saved["train"]["batch_size"], run_dir,
                   metrics, wall)
    if resumed:
        row["resumed_note"] = (
            f"resumed after interruption: its wall time is the {epoch_seconds / 60:.1f} min its "
            f"{len(row['curve'])} epochs took, summed over its sittings, not the "
            f"{span / 60:.0f} min from first start to last write.")
    return row


def make_row(path: Path, overrides: list[str], planned: int, capped: bool, batch_size: int,
             run_dir: Path, metrics: dict, wall: float) -> dict:
    command = "cnnlab run " + shlex.join([str(path.relative_to(REPO))] + [
        a for o in overrides if not o.startswith(("runs_dir", "train.progress_bar"))
        for a in ("--set", o.replace(str(DEFAULT_DATA.resolve()), "../shared/datasets/cifar10/train"))])
    return {
        "recipe": str(path.relative_to(REPO)), **recipe_facts(path),
        "stand_in": stand_in_of(path)[1],
        "cnnlab_accuracy": round(100.0 * metrics["val"]["accuracy"], 2),
        "status": metrics["status"], "epochs_run": metrics["epochs_run"],
        "epochs_planned": planned, "capped": capped,
        "batch_size": batch_size, "best_epoch": metrics.get("best_epoch"),
        "train_minutes": round(metrics["train_seconds"] / 60.0, 1),
        "wall_minutes": round(wall / 60.0, 1),
        "seconds_per_epoch": round(metrics["train_seconds"] / max(1, metrics["epochs_run"]), 1),
        "command": command, "run_dir": str(run_dir),
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": metrics["machine"], "git_sha": metrics["git_sha"],
        "curve": learning_curve(run_dir),
    }


# Recipes whose own data is not offline run on the closest data here. Their row says which,
# and its gap to the published figure is not computed: the two figures are on different data.
CIFAR_GRAY_28 = ["data.channels=1", "data.image_size=28"]
STAND_INS = [
    # The 5-class recipes keep Fashion-MNIST's labels 0-4; CIFAR-10's labels 0-4 stand in.
    ("recipes/report001/*_5classes.yaml",
     [*CIFAR_GRAY_28, "data.classes=[airplane, automobile, bird, cat, deer]"],
     "CIFAR-10's first five classes (airplane, automobile, bird, cat, deer) in grayscale at "
     "28 px stand in for the report's Fashion-MNIST-style data, which is not offline"),
    ("recipes/report001/*_10classes.yaml", CIFAR_GRAY_28,
     "CIFAR-10 in grayscale at 28 px stands in for Fashion-MNIST, which is not offline"),
]


def stand_in_of(path: Path) -> tuple[list[str], str | None]:
    """The overrides that put ``path`` on stand-in data, and the sentence saying so (none: own data)."""
    from fnmatch import fnmatch

    recipe = path.relative_to(REPO).as_posix() if path.is_absolute() else path.as_posix()
    return next(((overrides, text) for pattern, overrides, text in STAND_INS
                 if fnmatch(recipe, pattern)), ([], None))


def learning_curve(run_dir: Path) -> list[list[float]]:
    """[epoch, held-out accuracy %, learning rate] per epoch, kept in the row as evidence."""
    from cnnlab.store import read_history

    return [[int(h["epoch"]), round(100.0 * h["val_accuracy"], 2), h["lr"]]
            for h in read_history(run_dir)]


def stand_in_note(row: dict) -> str | None:
    return f"stand-in data: {row['stand_in']}." if row.get("stand_in") else None


def capped_note(row: dict) -> str | None:
    """For a row cut short of its planned epochs: where its learning curve stood at the cut."""
    curve = row.get("curve")
    if not row.get("capped") or not curve:
        return None
    tail = ", ".join(f"{acc:.2f} (lr {lr:g})" for _, acc, lr in curve[-4:])
    return (f"capped at {row['epochs_run']} of {row['epochs_planned']} planned epochs; held-out "
            f"accuracy over the last epochs run: {tail}.")


# The rows the reproduction must hold (issue: report 002 steps 1, 2, 4, 5, 7 and report 003's
# final net, the latter may be capped at 30 epochs).
REQUIRED = ["recipes/report002/01_two_conv.yaml", "recipes/report002/02_four_conv.yaml",
            "recipes/report002/04_dropout.yaml", "recipes/report002/05_third_block.yaml",
            "recipes/report002/07_dropout_ramp.yaml", "recipes/report003/final_vgg.yaml"]


def load_rows(path: Path = RESULTS) -> dict[str, dict]:
    if path.is_file():
        return {row["recipe"]: row for row in json.loads(path.read_text())}
    return {}


def reencode(source: Path, target: Path, quality: int) -> Path:
    """A copy of an image folder with every JPEG decoded and saved again at ``quality``."""
    from PIL import Image

    for path in sorted(source.rglob("*.jpg")):
        out = target / path.relative_to(source)
        if out.is_file():
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as image:
            image.convert("RGB").save(out, quality=quality)
    return target


def jpeg_section(rows: dict[str, dict], reencoded: dict[str, dict]) -> list[str]:
    pairs = [(rows[k], reencoded[k]) for k in sorted(reencoded) if k in rows]
    if not pairs:
        return []
    lines = ["", "## What the JPEG copy costs", "",
             "The original PNG-quality CIFAR-10 is not available offline, so the cost of JPEG",
             "artefacts is measured the other way round: the same recipe, same split and seed, on",
             "a copy of the shared data decoded and saved once more as JPEG "
             f"(quality {pairs[0][1].get('reencode_quality')}); the change from one more generation",
             "of artefacts at the same quality estimates what the first one costs. Each side is one",
             "run (one seed), so a difference of about a point is within seed-to-seed noise.", "",
             "| recipe | shared JPEG copy % | re-encoded once more % | difference |",
             "| --- | --- | --- | --- |"]
    for original, again in pairs:
        lines.append(f"| {original['recipe']} | {original['cnnlab_accuracy']:.2f} | "
                     f"{again['cnnlab_accuracy']:.2f} | "
                     f"{again['cnnlab_accuracy'] - original['cnnlab_accuracy']:+.2f} |")
    return lines


def device_of(row: dict) -> str:
    """Where a row was measured: the GPU's name, or the CPU (model and vector unit if recorded)."""
    from cnnlab.store.run import cpu_description

    machine = row.get("machine") or {}
    return machine.get("cuda") or f"CPU, {cpu_description(machine)}"


# Why a recipe has no row in the table: the first pattern that matches its path wins (the last
# catches every other recipe), so every recipe gets a line and a new one is never left out.
OFFLINE_WEIGHTS = ("needs ImageNet weights that are not available offline here (no PyPI package "
                   "ships them; the run stops at once naming the file to download); "
                   "recipes/transfer/efficientnet_lite0_96.yaml is the real-weights stand-in")
NOT_MEASURED = [
    ("recipes/cifar10_fast/*", "measured by bench/time_to_accuracy.py: see docs/performance.md"),
    ("recipes/report002/series.sweep.yaml",
     "run end to end at 3 epochs a step (the sweep machinery, not the report's budget): see "
     "docs/sweeps.md"),
    ("recipes/report002/search.sweep.yaml",
     "16 Optuna trials at a reduced budget on a CIFAR-10 subset: see docs/sweeps.md"),
    ("recipes/report003/losses.sweep.yaml",
     "four full-budget trials of final_vgg.yaml (about 70 min each on 2 cores; its first trial, "
     "focal loss with class weights, is final_vgg.yaml itself, in the table above), run as a sweep "
     "that spans sessions: `cnnlab sweep recipes/report003/losses.sweep.yaml --set "
     "data.name=imagefolder --set data.root=../shared/datasets/cifar10/train --set "
     "data.val_split=0.1 --set data.test_split=0.0 --set data.split_seed=0` (continued with "
     "--resume; a stopped trial goes on from its last checkpoint); not yet run"),
    ("recipes/transfer/efficientnet_lite0_96.yaml",
     "real ImageNet weights from a pip package; bench/transfer_imagenet.py measures it into "
     "docs/transfer.md (not yet run at full size)"),
    ("recipes/report000/*",
     "the report's satellite chips are not available offline; the closest data here is "
     "CIFAR-10 resized to 224 px (recipes/report000/1_basic_cnn_tfrecord.yaml's header packs it), "
     "not yet run at the report's budget"),
    ("recipes/report001/kaggle.yaml",
     "the report's Kaggle flow needs the competition's train.csv and test images, which are not "
     "offline; its net runs on stand-in data as cnn_k333_5classes.yaml"),
    ("recipes/report001/*",
     "the report's Fashion-MNIST Kaggle data is not in ../shared and torchvision's download "
     "needs the internet; `bench/reproduce.py RECIPE` runs it on stand-in data (CIFAR-10 in "
     "grayscale at 28 px), not yet run"),
    ("recipes/report003/resnet50_transfer.yaml", OFFLINE_WEIGHTS),
    ("recipes/report003/vgg16_transfer.yaml", OFFLINE_WEIGHTS),
    ("recipes/report004/guaxinim_cnn_*", "the report's own CNN: fits on the CPU, not yet run"),
    ("recipes/report004/deeper_cnn_*", "the report's own CNN: fits on the CPU, not yet run"),
    ("recipes/report004/local_cnn*", "the report's own CNN: fits on the CPU, not yet run"),
    ("recipes/report004/*", OFFLINE_WEIGHTS),
    ("recipes/*", "not yet run: `.venv/bin/python bench/reproduce.py RECIPE`"),
]


# Recipes that train exactly what another recipe trains (only name and description differ:
# the report names one net twice). A run of the twin is their figure; running both would
# repeat the same seeded run. tests/test_bench_reproduce.py checks that the configs agree.
SAME_AS = {
    "recipes/report004/local_cnn2_32.yaml": "recipes/report004/deeper_cnn_32.yaml",
    "recipes/report004/local_cnn2_64.yaml": "recipes/report004/deeper_cnn_64.yaml",
}


def recipe_status(recipe: str, rows: dict[str, dict]) -> str:
    """One line on ``recipe`` (a path like recipes/report002/01_two_conv.yaml): measured or why not."""
    from fnmatch import fnmatch

    if recipe in rows:
        capped = " at a capped budget (see Notes)" if rows[recipe].get("capped") else ""
        capped += " on stand-in data (see Notes)" if rows[recipe].get("stand_in") else ""
        return f"measured{capped}: {rows[recipe]['cnnlab_accuracy']:.2f}% (table above)"
    twin = SAME_AS.get(recipe)
    if twin in rows:
        published = recipe_facts(REPO / recipe)["published"]
        measured = rows[twin]["cnnlab_accuracy"]
        against = (f"; published for this row {published}%, gap {measured - published:+.2f}"
                   if published is not None else "")
        return (f"the same configuration as `{twin}` (only name and description differ), so "
                f"its figure, {measured:.2f}% (table above), is this recipe's{against}")
    return next(reason for pattern, reason in NOT_MEASURED if fnmatch(recipe, pattern))


def every_recipe_section(rows: dict[str, dict]) -> list[str]:
    from cnnlab.recipes import list_recipes

    lines = ["", "## Every recipe", "", "| recipe | status |", "| --- | --- |"]
    for recipe in list_recipes(REPO / "recipes"):
        path = f"recipes/{recipe.path.relative_to(REPO / 'recipes').as_posix()}"
        lines.append(f"| `{path}` | {recipe_status(path, rows)} |")
    return lines


def write_table(rows: dict[str, dict]) -> None:
    TABLE.write_text(render_table(rows))


def render_table(rows: dict[str, dict]) -> str:
    lines = [
        "# Reproducing the reference reports",
        "",
        "Generated by `bench/reproduce.py` from `docs/reproduction.json`; do not edit by hand.",
        "Data: `../shared/datasets/cifar10/train` (the JPEG copy of CIFAR-10's training images) as",
        "an image folder, stratified 45,000 / 5,000 train / held-out split (split seed 0). The",
        "published figures are the reports' accuracies on CIFAR-10's official 10,000 test images;",
        "cnnlab's are on the 5,000 held-out images. Wall-clock is the whole run (data load,",
        "training with per-epoch validation, evaluation) on the device the row names. CPU rows ran",
        "on the 2-core development machine; those measured on 2026-11-22 shared it with other jobs",
        "(test suites, a second training run), so their minutes are upper bounds, not speed",
        "figures: bench/throughput.py measures speed. GPU rows ran on a lent machine (the same",
        "recipe, data and split; only the device differs).",
        "",
        "| report | experiment | published % | cnnlab % | gap | epochs run (planned) | batch | "
        "device | wall min | s/epoch | command |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in sorted(rows.values(), key=lambda r: r["recipe"]):
        published = row.get("published")
        gap = ("n/a (other data)" if row.get("stand_in") else
               f"{row['cnnlab_accuracy'] - published:+.2f}" if published is not None else "n/a")
        epochs = f"{row['epochs_run']} ({row['epochs_planned']}{', capped' if row['capped'] else ''})"
        lines.append(
            f"| {row['report']} | {row['experiment']} | "
            f"{published if published is not None else 'not published'} | "
            f"{row['cnnlab_accuracy']:.2f} | {gap} | {epochs} | {row['batch_size']} | "
            f"{device_of(row)} | {row['wall_minutes']} | {row['seconds_per_epoch']} | "
            f"`{row['command']}` |")
    lines += jpeg_section(rows, load_rows(REENCODED_RESULTS))
    lines += every_recipe_section(rows)
    missing = [recipe for recipe in REQUIRED if recipe not in rows]
    if missing:
        lines += ["", "## Not measured yet", ""]
        lines += [f"- `{recipe}`: `.venv/bin/python bench/reproduce.py "
                  + ("--max-epochs 30 " if "report003" in recipe else "") + f"{recipe}`"
                  for recipe in missing]
    notes = [(row["recipe"], " ".join(filter(None, [capped_note(row), stand_in_note(row),
                                                    row.get("resumed_note"), row.get("note")])))
             for row in sorted(rows.values(), key=lambda r: r["recipe"])]
    if any(text for _, text in notes):
        lines += ["", "## Notes", ""]
        lines += [f"- **{recipe}**: {text}" for recipe, text in notes if text]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipes", nargs="*", type=Path)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--max-epochs", type=int, default=None,
                        help="cap a recipe's epochs (the row says so)")
    parser.add_argument("--runs-dir", type=Path, default=REPO / "runs" / "reproduction")
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--from-run", type=Path, default=None, metavar="RUN_DIR",
                        help="record RUN_DIR (made with the same overrides) as the row of the one "
                        "recipe given, instead of training it")
    parser.add_argument("--reencoded", type=int, metavar="QUALITY", default=None,
                        help="train on a copy of --data saved again as JPEG at QUALITY (results "
                        "go to docs/reproduction_reencoded.json)")
    args = parser.parse_args()
    results_path = REENCODED_RESULTS if args.reencoded else RESULTS
    rows = load_rows(results_path)
    if args.reencoded and not args.table_only:
        args.data = reencode(args.data, Path("/tmp") / f"cnnlab_reencoded_q{args.reencoded}" /
                             args.data.name, args.reencoded)
    if not args.table_only:
        if not args.data.is_dir():
            print(f"the CIFAR-10 image folder {args.data} is absent", file=sys.stderr)
            return 2
        for path in args.recipes:
            if args.from_run is not None:
                row = row_from_run(path.resolve(), args.from_run.resolve())
            else:
                row = run_recipe(path.resolve(), args.data.resolve(), args.max_epochs,
                                 args.runs_dir)
            if args.reencoded:
                row["reencode_quality"] = args.reencoded
            rows[row["recipe"]] = {**rows.get(row["recipe"], {}), **row}
            results_path.write_text(json.dumps(list(rows.values()), indent=2) + "\n")
            if not args.reencoded:
                write_table(rows)
            print(json.dumps({k: row[k] for k in ("recipe", "published", "cnnlab_accuracy",
                                                  "epochs_run", "wall_minutes")}), flush=True)
    write_table(load_rows())
    return 0


if __name__ == "__main__":
    sys.exit(main())

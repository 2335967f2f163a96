"""docs/reproduction.md covers every recipe and is what bench/reproduce.py generates."""

from __future__ import annotations

import importlib.util
from datetime import datetime, timedelta
from pathlib import Path

from cnnlab.recipes import list_recipes

REPO = Path(__file__).resolve().parents[1]


def _reproduce():
    spec = importlib.util.spec_from_file_location("reproduce", REPO / "bench" / "reproduce.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_recipe_has_a_line_saying_measured_or_why_not():
    reproduce = _reproduce()
    rows = reproduce.load_rows()
    page = reproduce.render_table(rows)
    for recipe in list_recipes(REPO / "recipes"):
        path = f"recipes/{recipe.path.relative_to(REPO / 'recipes').as_posix()}"
        line = next((l for l in page.splitlines() if l.startswith(f"| `{path}` |")), None)
        assert line is not None, f"{path} is missing from docs/reproduction.md"
        assert ("measured" in line) == (path in rows) or "docs/" in line, line


def test_the_page_is_generated_not_edited():
    reproduce = _reproduce()
    assert (REPO / "docs" / "reproduction.md").read_text() == reproduce.render_table(
        reproduce.load_rows()), "regenerate with: .venv/bin/python bench/reproduce.py --table-only"


def _run_by_hand(tmp_path):
    """Report 002 step 1 run as a user would by hand (tiny data, 2 epochs): (recipe, root, outcome)."""
    from cnnlab.config import load_config
    from cnnlab.pipeline import run_experiment
    from conftest import make_image_folder

    recipe = REPO / "recipes" / "report002" / "01_two_conv.yaml"
    root = make_image_folder(tmp_path / "images", per_class=10)
    cfg = load_config(recipe, [
        "data.name=imagefolder", f"data.root={root}", "data.val_split=0.2",
        "data.test_split=0.0", "data.split_seed=0", "train.epochs=2", "train.batch_size=8",
        "train.progress_bar=false", f"runs_dir={tmp_path / 'runs'}"])
    return recipe, root, run_experiment(cfg, say=lambda text: None)


def test_a_run_made_by_hand_becomes_the_recipes_row(tmp_path):
    reproduce = _reproduce()
    recipe, root, outcome = _run_by_hand(tmp_path)

    row = reproduce.row_from_run(recipe, outcome.run_dir)
    assert row["recipe"] == "recipes/report002/01_two_conv.yaml" and row["published"] == 62.07
    assert row["cnnlab_accuracy"] == round(100 * outcome.metrics["val"]["accuracy"], 2)
    assert (row["epochs_run"], row["epochs_planned"], row["batch_size"]) == (2, 2, 8)
    assert f"--set data.root={root}" in row["command"] and len(row["curve"]) == 2
    assert 0 <= row["wall_minutes"] < 10


def test_report001_runs_on_stand_in_data_and_its_row_says_so(tmp_path):
    from cnnlab.config import load_config

    reproduce = _reproduce()
    five = REPO / "recipes" / "report001" / "cnn_k333_5classes.yaml"
    overrides, text = reproduce.stand_in_of(five)
    cfg = load_config(five, ["data.name=imagefolder", f"data.root={tmp_path}", *overrides])
    assert cfg.data.channels == 1 and cfg.data.image_size in (28, (28, 28))
    assert cfg.data.classes == ["airplane", "automobile", "bird", "cat", "deer"]
    assert "CIFAR-10" in text and reproduce.stand_in_of(
        REPO / "recipes" / "report002" / "01_two_conv.yaml") == ([], None)
    ten = reproduce.stand_in_of(REPO / "recipes" / "report001" / "resnet20_10classes.yaml")
    assert "data.channels=1" in ten[0] and not any("classes" in o for o in ten[0])

    row = {"recipe": "recipes/report001/cnn_k333_5classes.yaml", "report": "Report 001",
           "experiment": "3-layer CNN", "published": 72.8, "cnnlab_accuracy": 70.0,
           "stand_in": text, "epochs_run": 351, "epochs_planned": 351, "capped": False,
           "batch_size": 512, "wall_minutes": 1.0, "seconds_per_epoch": 0.2, "command": "c",
           "machine": {"cuda": "GPU"}}
    page = reproduce.render_table({row["recipe"]: row})
    assert "| 70.00 | n/a (other data) |" in page and f"stand-in data: {text}" in page
    assert "measured on stand-in data (see Notes): 70.00%" in page


def test_twin_recipes_train_the_same_and_share_their_row():
    from cnnlab.config import load_config

    reproduce = _reproduce()
    for recipe, twin in reproduce.SAME_AS.items():
        configs = [load_config(REPO / path).model_dump() for path in (recipe, twin)]
        for config in configs:
            del config["name"], config["description"]
        assert configs[0] == configs[1], f"{recipe} no longer trains what {twin} trains"
    recipe, twin = next(iter(reproduce.SAME_AS.items()))
    status = reproduce.recipe_status(recipe, {twin: {"cnnlab_accuracy": 81.0}})
    published = reproduce.recipe_facts(REPO / recipe)["published"]
    assert "81.00%" in status and f"gap {81.0 - published:+.2f}" in status
    assert "same configuration" not in reproduce.recipe_status(recipe, {})


def test_a_run_resumed_after_a_gap_counts_its_epochs_time_not_the_gap(tmp_path):
    reproduce = _reproduce()
    recipe, _, outcome = _run_by_hand(tmp_path)
    run_dir = outcome.run_dir
    # The folder's name is its start stamp: three hours earlier reads as a run with a long gap.
    earlier = (datetime.strptime(run_dir.name[:15], "%Y%m%d-%H%M%S") - timedelta(hours=3))
    moved = run_dir.rename(run_dir.with_name(earlier.strftime("%Y%m%d-%H%M%S") + run_dir.name[15:]))

    row = reproduce.row_from_run(recipe, moved)
    assert row["wall_minutes"] < 10  # the epochs' time, not 180 minutes
    assert "resumed after interruption" in row["resumed_note"] and "180 min" in row["resumed_note"]
    assert "resumed after interruption" in reproduce.render_table({row["recipe"]: row})

"""The recipe book: every experiment of the reference reports is a recipe that validates and runs.

The smoke test swaps each recipe's data for a tiny .npz of the same shape (channels, image
size, class names) and trains one short epoch end to end through the pipeline.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from cnnlab.config import load_config
from cnnlab.errors import ConfigError
from cnnlab.pipeline import run_experiment
from cnnlab.recipes import PACKAGE_RECIPES, Recipe, list_recipes

REPO = Path(__file__).resolve().parents[1]
RECIPES = [r for r in list_recipes(REPO / "recipes") if r.kind == "experiment"]
# Recipes on a CSV of labels (report 001's Kaggle flow) keep their csv keys and predict a test
# folder; tests/test_kaggle_recipe.py runs them on a tiny Kaggle layout instead of an .npz.
NPZ_SMOKE = [r for r in RECIPES if "name: csv" not in r.path.read_text(encoding="utf-8")]
SWEEPS = [r for r in list_recipes(REPO / "recipes") if r.kind == "sweep"]

# Every experiment the issue "Every experiment in the reference reports as a recipe" names.
EXPECTED = {
    *(f"report000/{n}" for n in ("1_basic_cnn", "2_data_augmentation", "3_classification_layer",
                                  "4_rescaling")),
    *(f"report001/{net}_{k}classes" for net in ("cnn_k333", "cnn_k678", "resnet20")
      for k in (5, 10)),
    *(f"report002/{n}" for n in ("01_two_conv", "02_four_conv", "03_batchnorm", "04_dropout",
                                  "05_third_block", "06_dense_head", "07_dropout_ramp",
                                  "08_batch256", "09_early_stopping", "10_augmentation")),
    "report003/final_vgg", "report003/final_vgg_sgd", "report003/squeezenet_scratch",
    *(f"report004/{net}_{px}" for net in ("guaxinim_cnn", "deeper_cnn") for px in (32, 64)),
    # Report 004's other rows: the MobileNetV2 table at 96 and 224, the two base models it ran
    # without printing a row, and the closing table's local CNNs.
    "report004/mobilenetv2_96", "report004/mobilenetv2_224", "report004/densenet169_96",
    "report004/nasnet_224", "report004/local_cnn1_32", "report004/local_cnn2_32",
    "report004/local_cnn2_64",
}
# 85M parameters at 1.5 s a step on 2 cores: the smoke test of this one is marked slow.
SLOW_SMOKE = {"report004/nasnet_224"}

CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
FASHION_MNIST = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                 "Sneaker", "Bag", "Ankle boot"]
# Source -> (class names, channels, image size) when the recipe does not set them.
SOURCES = {
    "cifar10": (CIFAR10, 3, 32),
    "cifar100": ([f"class{i}" for i in range(100)], 3, 32),
    "mnist": ([str(i) for i in range(10)], 1, 28),
    "fashion_mnist": (FASHION_MNIST, 1, 28),
}
PER_CLASS, TEST_PER_CLASS = 4, 2  # val_split 0.25 holds out 1 of the 4 of each class
# Report 000's 224 px recipes run at 64 px in the smoke test, except this one kept at 224.
KEEP_224 = "report000/1_basic_cnn"


def by_name(recipes: list[Recipe]) -> dict[str, Recipe]:
    return {r.name: r for r in recipes}


# ------------------------------------------------------------------------------ listing

def test_the_reports_sweeps_are_sweep_recipes_that_validate():
    assert {r.name for r in SWEEPS} >= {"report002/series.sweep", "report002/search.sweep",
                                         "report003/losses.sweep", "report004/transfer.sweep"}
    for recipe in SWEEPS:
        loaded = recipe.load()  # every step / parameter value checked against the schema
        assert recipe.citation.startswith("Report"), recipe.name
        assert recipe.command.startswith("cnnlab sweep ")
    series = next(r for r in SWEEPS if r.name == "report002/series.sweep").load()
    assert series.sweep.planned_trials == 10
    assert series.trial_config(6, {}, 6)[0].train.epochs == 30
    assert next(r for r in SWEEPS if r.name == "report004/transfer.sweep").load(
        ).sweep.planned_trials == 8
    search = next(r for r in SWEEPS if r.name == "report002/search.sweep").load()
    cfg, _ = search.trial_config(0, {"model.layers.5.dropout.rate": 0.05})
    assert cfg.model.layers[5].rate == 0.05


def test_every_experiment_of_the_reports_is_a_recipe():
    names = {r.name for r in RECIPES}
    assert not EXPECTED - names, f"missing recipes: {sorted(EXPECTED - names)}"
    assert len([n for n in names if n.startswith("report002/")]) == 10


def test_default_root_is_the_repositorys_recipes_folder(monkeypatch, tmp_path):
    everything = sorted(r.name for r in RECIPES + SWEEPS)
    monkeypatch.chdir(REPO)
    assert [r.name for r in list_recipes()] == everything
    monkeypatch.chdir(tmp_path)  # no ./recipes here: the source checkout's folder
    assert PACKAGE_RECIPES == REPO / "recipes"
    assert [r.name for r in list_recipes()] == everything
    (tmp_path / "recipes" / "mine").mkdir(parents=True)
    (tmp_path / "recipes" / "mine" / "a.yaml").write_text("# Mine, a test.\nname: mine/a\n")
    assert [(r.name, r.citation) for r in list_recipes()] == [("mine/a", "Mine, a test.")]


def test_missing_root_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        list_recipes(tmp_path / "nowhere")


def test_header_parsing(tmp_path):
    (tmp_path / "a.yaml").write_text(
        "# Report 002 (CIFAR-10), step 1: two convs.\n# Published test accuracy: 62.07%. Adam.\n"
        "name: a\n# Published test accuracy: 10.00%.\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.yaml").write_text(
        "# A variant of the final net.\n# Report 003 (CIFAR-10), final model: VGG.\n"
        "# Published: test accuracy 0.8963 (val 0.9059).\nname: b\n")
    (tmp_path / "sub" / "c.yaml").write_text(
        "# Report 000 (chips), experiment 1.\n# Published validation accuracy: 46.57% (val).\n"
        "name: c\n")
    (tmp_path / "d.yaml").write_text("# Report 002 (x), step 8.\n"
                                     "# Published test accuracy: not published.\nname: d\n")
    a, d, b, c = list_recipes(tmp_path)
    assert (a.name, a.citation, a.published_accuracy, a.published_split) == (
        "a", "Report 002 (CIFAR-10), step 1: two convs.", 0.6207, "test")
    assert (b.name, b.citation, b.published_accuracy) == (
        "sub/b", "Report 003 (CIFAR-10), final model: VGG.", 0.8963)
    assert (c.published_accuracy, c.published_split) == (0.4657, "validation")
    assert (d.published_accuracy, d.published_split) == (None, None)


# --------------------------------------------------------------------------- validation

@pytest.mark.parametrize("recipe", RECIPES, ids=lambda r: r.name)
def test_recipe_validates_and_cites_its_source(recipe: Recipe):
    cfg = load_config(recipe.path)
    assert cfg.name == recipe.name, "the experiment name should be the recipe's path"
    assert recipe.citation
    report = re.match(r"report(\d{3})/", recipe.name)
    if report:
        assert re.match(rf"Report {report.group(1)} \(.+\), .+", recipe.citation), recipe.citation
        first = recipe.path.read_text(encoding="utf-8").splitlines()[0]
        assert first == f"# {recipe.citation}"


def test_published_accuracies_are_read():
    recipes = by_name(RECIPES)
    assert recipes["report002/01_two_conv"].published_accuracy == pytest.approx(0.6207)
    assert recipes["report002/08_batch256"].published_accuracy is None
    assert recipes["report003/final_vgg"].published_accuracy == pytest.approx(0.8963)
    assert recipes["report003/final_vgg_sgd"].published_accuracy is None
    assert recipes["report004/guaxinim_cnn_32"].published_accuracy == pytest.approx(0.7632)
    assert recipes["report001/resnet20_5classes"].published_accuracy == pytest.approx(0.835)
    assert recipes["report001/resnet20_10classes"].published_accuracy is None
    assert recipes["report000/4_rescaling"].published_split == "validation"


def test_recipes_are_what_the_reports_describe():
    recipes = by_name(RECIPES)
    five = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat"]
    for name in ("cnn_k333", "cnn_k678", "resnet20"):
        small, full = (load_config(recipes[f"report001/{name}_{k}classes"].path) for k in (5, 10))
        assert small.data.name == full.data.name == "fashion_mnist"
        assert small.data.classes == five and full.data.classes is None
    assert load_config(recipes["report001/resnet20_5classes"].path).model.name == "resnet_cifar"
    for name in ("1_basic_cnn", "2_data_augmentation", "3_classification_layer", "4_rescaling"):
        cfg = load_config(recipes[f"report000/{name}"].path)
        assert cfg.data.image_size == 224 and cfg.data.name == "imagefolder"
        assert str(cfg.data.root) == "/path/to/satellite_chips"
    for net in ("guaxinim_cnn", "deeper_cnn"):
        for px in (32, 64):
            cfg = load_config(recipes[f"report004/{net}_{px}"].path)
            assert cfg.data.name == "cifar10" and (cfg.data.image_size or 32) == px
            assert (cfg.data.val_split, cfg.data.test_split) == (0.1, 0.0)
    assert load_config(recipes["report003/squeezenet_scratch"].path).model.name == "squeezenet"
    for name, backbone, size in (("mobilenetv2_96", "timm:mobilenetv2_100", 96),
                                 ("mobilenetv2_224", "timm:mobilenetv2_100", 224),
                                 ("densenet169_96", "timm:densenet169", 96),
                                 ("nasnet_224", "timm:nasnetalarge", 224)):
        cfg = load_config(recipes[f"report004/{name}"].path)
        assert cfg.model.backbone == backbone and cfg.model.pretrained is True
        assert (cfg.model.input_size or cfg.data.image_size) == size
    # Report 004's augmentation is ImageDataGenerator's: brightness_range is multiplicative.
    for recipe in recipes.values():
        if recipe.name.startswith("report004/"):
            specs = load_config(recipe.path).augment
            assert [a.mode for a in specs if a.type == "brightness"] == ["multiply"], recipe.name
    # Report 001's ResNet head is AveragePooling2D() + Flatten, as its code has it.
    for k in (5, 10):
        cfg = load_config(recipes[f"report001/resnet20_{k}classes"].path)
        assert cfg.model.pool == "avg2x2_flatten"


PRETRAINED = [r for r in RECIPES if r.name.startswith("report004/")
              and getattr(load_config(r.path).model, "pretrained", False) is True]


@pytest.mark.parametrize("recipe", PRETRAINED, ids=lambda r: r.name)
def test_pretrained_recipes_fail_fast_offline_naming_the_file(recipe: Recipe, tmp_path,
                                                              monkeypatch):
    from cnnlab.models.backbones import preflight

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("CNNLAB_OFFLINE", "1")
    cfg = load_config(recipe.path)
    with pytest.raises(ConfigError) as caught:
        preflight(cfg.model)
    message = str(caught.value)
    assert "not on this machine" in message and "pretrained: false" in message
    assert cfg.model.backbone.split(":")[1] in message


# -------------------------------------------------------------------------------- smoke

def tiny_npz(path: Path, classes: list[str], channels: int, size: int) -> Path:
    """PER_CLASS training and TEST_PER_CLASS test images per class; colour depends on the class."""
    rng = np.random.default_rng(0)

    def images(per_class: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.repeat(np.arange(len(classes)), per_class)
        x = rng.integers(0, 60, (len(y), size, size, channels)).astype(np.int64)
        x += (y * 191 // max(1, len(classes) - 1))[:, None, None, None]
        x = x.clip(0, 255).astype(np.uint8)
        return (x[..., 0] if channels == 1 else x), y

    x, y = images(PER_CLASS)
    x_test, y_test = images(TEST_PER_CLASS)
    np.savez(path, x=x, y=y, x_test=x_test, y_test=y_test, classes=np.array(classes))
    return path


@pytest.mark.parametrize("recipe", [
    pytest.param(r, marks=pytest.mark.slow) if r.name in SLOW_SMOKE else r for r in NPZ_SMOKE],
    ids=lambda r: r.name)
def test_recipe_trains_one_epoch_on_tiny_data_of_its_shape(recipe: Recipe, tmp_path):
    cfg = load_config(recipe.path)
    data = cfg.data
    classes, channels, size = SOURCES.get(data.name, (None, 3, 32))
    if classes is None:  # an image folder: its classes are whatever the folder holds
        named = sorted(cfg.train.class_weights.multipliers)
        classes = named + [f"class{i}" for i in range(max(0, 4 - len(named)))]
    channels = data.channels or channels
    overrides = []
    if data.image_size is not None:
        size = data.image_size if isinstance(data.image_size, int) else data.image_size[0]
        if size > 64 and recipe.name != KEEP_224:
            size = 64
            overrides.append("data.image_size=64")
    if cfg.model.name == "backbone":  # offline here: no library weights, a smaller input
        overrides.append("model.pretrained=false")
        if cfg.model.input_size:
            overrides.append("model.input_size=64")
    if data.files is not None:  # a TFRecord/WebDataset recipe: the npz replaces its files
        overrides.append("data.files=null")
    npz = tiny_npz(tmp_path / "tiny.npz", classes, channels, size)

    cfg = load_config(recipe.path, overrides + [
        "data.name=npz", f"data.root={npz}", "data.val_split=0.25",
        "train.epochs=1", "train.batch_size=8", "train.progress_bar=false", "train.threads=1",
        f"runs_dir={tmp_path / 'runs'}"])
    outcome = run_experiment(cfg, say=lambda text: None)

    metrics = json.loads((outcome.run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed", metrics.get("error")
    assert metrics["epochs_run"] == 1
    expected_classes = data.classes or classes
    assert list(metrics["test"]["per_class"]) == expected_classes
    assert sum(c["support"] for c in metrics["val"]["per_class"].values()) == len(expected_classes)
    for name in ("history.csv", "per_class.csv", "confusion_matrix.csv", "summary.txt",
                 "model.safetensors"):
        assert (outcome.run_dir / name).is_file(), name
    if recipe.name == KEEP_224:
        assert "(None, 224, 224, 32)" in (outcome.run_dir / "summary.txt").read_text()

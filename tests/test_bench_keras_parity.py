"""bench/keras_parity.py without Keras: the shared split, its symlink tree, the overrides, the table."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import ttest_ind

from cnnlab.config import load_config
from cnnlab.data.imagefolder import list_images

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def parity():
    spec = importlib.util.spec_from_file_location("keras_parity", REPO / "bench" / "keras_parity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "source"
    for name, count in (("cat", 12), ("dog", 9), ("frog", 15)):
        (root / name).mkdir(parents=True)
        for i in range(count):
            (root / name / f"{name}{i:02d}.png").write_bytes(b"not decoded here")
        (root / name / "notes.txt").write_text("not an image")
    return root


def test_split_is_a_seeded_stratified_subset(parity, folder):
    classes, files, labels = parity.list_class_files(folder)
    assert classes == ["cat", "dog", "frog"] and len(files) == 36
    train, val = parity.make_split(labels, 10, 0.2, seed=0)
    assert not set(train) & set(val)
    # 10 per class where there are enough (dog has only 9), 20% of each class held out.
    assert np.bincount(labels[np.concatenate([train, val])]).tolist() == [10, 9, 10]
    assert np.bincount(labels[val], minlength=3).min() >= 1
    again = parity.make_split(labels, 10, 0.2, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip((train, val), again))
    other = parity.make_split(labels, 10, 0.2, seed=1)
    assert not np.array_equal(np.sort(other[1]), np.sort(val))


def test_symlink_tree_is_what_cnnlab_reads_as_train_and_val(parity, folder, tmp_path):
    classes, files, labels = parity.list_class_files(folder)
    train, val = parity.make_split(labels, None, 0.25, seed=0)
    out = tmp_path / "work" / "data"
    (out / "stale").mkdir(parents=True)  # a previous run's leftovers are replaced
    parity.materialise(out, classes, files, labels, {"train": train, "val": val})
    listing = list_images(out)
    assert sorted(listing) == ["train", "val"]
    for part, idx in (("train", train), ("val", val)):
        expected = {(classes[labels[i]], files[i].name) for i in idx}
        got = {(c, p.name) for c, paths in listing[part].items() for p in paths}
        assert got == expected
        link = next(iter(listing[part]["cat"]))
        assert link.is_symlink() and link.resolve().parent == (folder / "cat").resolve()


@pytest.mark.parametrize("model", ["step7", "vgg3"])
def test_overrides_make_the_recipe_train_as_the_peer(parity, model, tmp_path):
    cfg = load_config(parity.RECIPES[model], parity.cnnlab_overrides(
        model, tmp_path / "data", epochs=4, seed=3, threads=2, work=tmp_path))
    train = cfg.train
    assert (train.epochs, train.seed, train.threads, train.optimizer, train.lr) == (4, 3, 2, "adam", 1e-3)
    assert train.early_stopping is None and train.reduce_lr_on_plateau is None
    assert train.checkpoint is None
    assert train.loss.name == "cross_entropy" and train.class_weights.mode == "none"
    assert cfg.data.name == "imagefolder" and cfg.data.normalization == "rescale"


def _runs(side, accs, seconds):
    return [{"side": side, "seed": s, "val_accuracy": a, "epoch_seconds": [99.0, sec, sec]}
            for s, (a, sec) in enumerate(zip(accs, seconds))]


def test_summary_uses_welch_and_steady_epochs(parity):
    cn, ke = [0.70, 0.72, 0.71], [0.69, 0.73, 0.70]
    summary = parity.summarise("vgg3", _runs("cnnlab", cn, [10, 10, 10]) + _runs("keras", ke, [15, 15, 15]))
    assert summary["welch_p"] == pytest.approx(ttest_ind(cn, ke, equal_var=False).pvalue, abs=1e-4)
    assert summary["delta_accuracy"] == pytest.approx(np.mean(cn) - np.mean(ke), abs=1e-4)
    # The first (warm-up) epoch's 99 s is left out of seconds per epoch.
    assert summary["cnnlab"]["epoch_seconds_mean_std"] == [10.0, 0.0]
    assert summary["keras_over_cnnlab_epoch_seconds"] == 1.5
    table = parity.markdown_table([{**summary, "batch": 128}], {
        "train_images": 9000, "val_images": 1000, "per_class": 1000, "split_seed": 0,
        "epochs": 3, "batch": "128", "threads": 2, "peer": "keras-x"})
    rows = [line for line in table.splitlines() if line.startswith("| vgg3 |")]
    assert len(rows) == 2
    assert "71.00 ± 1.00" in rows[0] and f"p = {summary['welch_p']:.3g}" in rows[0]
    assert "| 1.50 |" in rows[0]


def test_one_seed_a_side_cannot_be_judged(parity):
    summary = parity.summarise("step7", _runs("cnnlab", [0.5], [2]) + _runs("keras", [0.4], [3]))
    assert summary["welch_p"] is None and summary["verdict"].startswith("cannot judge")

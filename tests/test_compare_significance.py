"""`compare --baseline` on real training: seed noise is not significant, a real difference is.

Both checks train several seeds, so they use tiny nets and few epochs; the CIFAR-10 one reads
../shared/datasets and skips where it is absent.
"""

import json

import pytest
import yaml

from conftest import cli, tiny_experiment




def run_seeds(tmp_path, cfg, seeds, capsys):
    path = tmp_path / f"{cfg['name'].replace('/', '_')}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    code, out, err = cli(["run", path, "--seeds", seeds], capsys)
    assert code == 0, err + out


def verdict(tmp_path, baseline, capsys):
    code, out, err = cli(["compare", tmp_path / "runs", "--baseline", baseline, "--format", "json"],
                         capsys)
    assert code == 0, err
    data = json.loads(out)
    assert data["test"].startswith("Welch's t-test")
    (other,) = [row for row in data["rows"] if row["experiment"] != baseline]
    return other


def test_experiments_differing_only_by_seed_are_not_significantly_different(tmp_path, capsys):
    base = tiny_experiment(tmp_path, {"name": "digits", "val_split": 0.2, "test_split": 0.3},
                           train={"epochs": 2, "batch_size": 64, "lr": 1e-2, "threads": 1})
    run_seeds(tmp_path, {**base, "name": "noise/a"}, 5, capsys)
    other = {**base, "name": "noise/b", "train": {**base["train"], "seed": 1000}}
    run_seeds(tmp_path, other, 5, capsys)
    row = verdict(tmp_path, "noise/a", capsys)
    assert row["n"] == 5 and row["seeds"] == [1000, 1001, 1002, 1003, 1004]
    assert row["significance"] == "not significant", row
    assert row["p_value"] >= 0.05


@pytest.mark.slow
def test_report002_step1_and_step5_nets_differ_significantly(tmp_path, capsys, shared_cifar):
    """Report 002's first net (two convs, one pool) against its fifth (three blocks of two convs
    with BatchNorm and 20% dropout), scaled down: 600 CIFAR-10 images, 3 epochs, 3 seeds each.
    In that budget the shallow net already learns and the deep one has not yet left chance,
    a real difference that must come out significant."""
    data = {"name": "imagefolder", "root": str(shared_cifar), "max_per_class": 60,
            "val_split": 0.15, "test_split": 0.35, "cache": True}
    train = {"epochs": 3, "batch_size": 32, "threads": 1}
    step1 = tiny_experiment(tmp_path, data, train=train, name="report002/step1", model={"layers": [
        {"conv2d": {"filters": 8, "padding": "same", "activation": "relu"}},
        {"conv2d": {"filters": 8, "padding": "same", "activation": "relu"}},
        {"maxpool2d": {"pool": 2}}, {"flatten": {}}]})
    step5 = tiny_experiment(tmp_path, data, train=train, name="report002/step5", model={"layers": [
        {"conv_block": {"filters": [8, 16, 16], "convs": 2, "batchnorm": "after_activation",
                        "bn_momentum": 0.9, "dropout": 0.2}},
        {"flatten": {}}]})
    run_seeds(tmp_path, step1, 3, capsys)
    run_seeds(tmp_path, step5, 3, capsys)
    row = verdict(tmp_path, "report002/step1", capsys)
    assert row["n"] == 3
    assert row["significance"] == "significant", row
    assert row["p_value"] < 0.05

"""`cnnlab data pack` through the CLI, and report 000's TFRecord recipe end to end on its output."""

from __future__ import annotations

import json

from conftest import REPO, cli, make_image_folder

RECIPE = REPO / "recipes" / "report000" / "1_basic_cnn_tfrecord.yaml"


def test_pack_a_folder_then_run_the_tfrecord_recipe_streamed(tmp_path, capsys) -> None:
    folder = make_image_folder(tmp_path / "images", per_class=10, size=20)
    out = tmp_path / "packed"
    code, stdout, err = cli(["data", "pack", folder, out, "--format", "tfrecord",
                             "--image-size", "16", "--val-split", "0.2", "--shard-size", "3KB"],
                            capsys)
    assert code == 0, err
    packed = json.loads((out / "pack.json").read_text())
    assert packed["parts"]["train"]["samples"] == 24 and packed["parts"]["val"]["samples"] == 6
    assert len(packed["parts"]["train"]["files"]) > 1 and packed["image_shape"] == [3, 16, 16]
    assert not list(out.glob("*.partial"))

    code, stdout, err = cli([
        "run", RECIPE, "--set", f"data.files={{train: '{out}/train-*.tfrecord', val: "
        f"'{out}/val-*.tfrecord'}}", "--set", "data.image_size=16", "--set", "data.test_split=0.25",
        "--set", "data.workers=0", "--set", "train.epochs=1", "--set", "train.batch_size=8",
        "--set", "train.progress_bar=false", "--runs-dir", tmp_path / "runs"], capsys)
    assert code == 0, err
    run = next((tmp_path / "runs" / "report000" / "1_basic_cnn_tfrecord").iterdir())
    data = json.loads((run / "data.json").read_text())
    assert data["classes"] == ["cat", "dog", "frog"]
    assert data["stream"]["samples_per_epoch"] == {"train": 18, "val": 6, "test": 6}
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "completed"
    assert sum(c["support"] for c in metrics["test"]["per_class"].values()) == 6
    assert sum(map(sum, metrics["val"]["confusion_matrix"])) == 6

    code, stdout, err = cli(["report", run], capsys)  # rebuilds the streamed split for its gallery
    assert code == 0, err
    assert (run / "hard_examples.png").is_file()


def test_pack_refuses_a_used_folder_a_bad_size_and_an_unknown_format(tmp_path, capsys) -> None:
    folder = make_image_folder(tmp_path / "images", per_class=3, size=8)
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("")
    for args, words in [
        (["--format", "tfrecord", "--shard-size", "lots"], "is not a size such as 256MB"),
        (["--format", "parquet"], "is not one of tfrecord, webdataset"),
    ]:
        code, _, err = cli(["data", "pack", folder, tmp_path / "new", *args], capsys)
        assert code == 2 and words in err, err
    code, _, err = cli(["data", "pack", folder, tmp_path / "used", "--format", "webdataset"], capsys)
    assert code == 2 and "is not an empty folder" in err

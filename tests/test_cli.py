"""End-to-end tests of the `cnnlab` command on tiny data, and its handling of bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import cli, make_image_folder, tiny_experiment

RUN_FILES = ["config.yaml", "summary.txt", "history.csv", "metrics.json", "per_class.csv",
             "confusion_matrix.csv", "confusion_matrix.png", "curves.png", "model.safetensors",
             "metrics_wide.csv", "metrics_wide.md"]




def write_cfg(tmp_path: Path, cfg: dict) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def only_run_dir(tmp_path: Path) -> Path:
    runs = [p for p in (tmp_path / "runs").rglob("metrics.json")]
    assert len(runs) == 1, runs
    return runs[0].parent


def test_run_writes_every_result_file(tmp_path, image_folder, capsys):
    cfg = tiny_experiment(tmp_path, {"root": str(image_folder), "val_split": 0.25,
                                     "test_split": 0.25},
                          augment=[{"flip": {}}], train={"epochs": 2})
    code, out, err = cli(["run", str(write_cfg(tmp_path, cfg))], capsys)
    assert code == 0, err
    run_dir = only_run_dir(tmp_path)
    assert run_dir.parent == tmp_path / "runs" / "tests" / "tiny"
    for name in RUN_FILES:
        assert (run_dir / name).is_file() and (run_dir / name).stat().st_size > 0, name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed"
    for split in ("val", "test"):
        assert set(metrics[split]) >= {"accuracy", "log_loss", "macro", "weighted", "per_class"}
        assert set(metrics[split]["per_class"]["cat"]) == {"precision", "recall", "specificity",
                                                           "f1", "support"}
    for key in ("best_epoch", "epochs_run", "params", "train_seconds", "predict_images_per_s",
                "versions", "git_sha"):
        assert key in metrics, key
    assert metrics["epochs_run"] == 2
    history = (run_dir / "history.csv").read_text().splitlines()
    assert history[0] == "epoch,loss,accuracy,val_loss,val_accuracy,lr,seconds,val_seconds"
    assert len(history) == 3
    assert "Total params" in (run_dir / "summary.txt").read_text()
    assert str(run_dir) in out and "support" in out.lower()


def test_set_overrides_and_runs_dir_option(tmp_path, image_folder, capsys):
    cfg = tiny_experiment(tmp_path, {"root": str(image_folder), "val_split": 0.25,
                                     "test_split": 0.25})
    other = tmp_path / "elsewhere"
    code, out, err = cli(["run", str(write_cfg(tmp_path, cfg)), "--set", "train.lr=1e-2",
                          "--runs-dir", str(other)], capsys)
    assert code == 0, err
    saved = yaml.safe_load(next(other.rglob("config.yaml")).read_text())
    assert saved["train"]["lr"] == pytest.approx(1e-2) and saved["runs_dir"] == str(other)


def test_listing_commands(capsys):
    for command, expected in (("datasets", "imagefolder"), ("models", "sequential"),
                              ("augmentations", "rotation"), ("losses", "focal"),
                              ("layers", "conv_block"), ("recipes", "07_dropout_ramp")):
        code, out, _ = cli([command], capsys)
        assert code == 0 and expected in out, command


def _unknown_key(tmp_path, folder):
    return tiny_experiment(tmp_path, {"root": str(folder)}, train={"epochz": 1})


def _wrong_type(tmp_path, folder):
    return tiny_experiment(tmp_path, {"root": str(folder)}, train={"batch_size": "big"})


def _missing_path(tmp_path, folder):
    return tiny_experiment(tmp_path, {"root": str(tmp_path / "no_such_folder")})


def _empty_class(tmp_path, folder):
    (folder / "empty_class").mkdir()
    return tiny_experiment(tmp_path, {"root": str(folder)})


def _corrupt_image(tmp_path, folder):
    (folder / "dog" / "corrupt_0042.jpg").write_bytes(b"\xff\xd8\xff garbage")
    return tiny_experiment(tmp_path, {"root": str(folder)})


def _image_size_zero(tmp_path, folder):
    return tiny_experiment(tmp_path, {"root": str(folder), "image_size": 0})


def _single_class(tmp_path, folder):
    single = make_image_folder(tmp_path / "single", classes=("lonely",))
    return tiny_experiment(tmp_path, {"root": str(single)})


@pytest.mark.parametrize("make_cfg, fragments", [
    (_unknown_key, ["train.epochz", "Allowed keys", "epochs"]),
    (_wrong_type, ["train.batch_size", "'big'", "integer"]),
    (_missing_path, ["no_such_folder", "does not exist"]),
    (_empty_class, ["empty_class", "no images"]),
    (_corrupt_image, ["corrupt_0042.jpg", "corrupt"]),
    (_image_size_zero, ["data.image_size", "greater than 0"]),
    (_single_class, ["lonely", "at least two"]),
], ids=lambda v: getattr(v, "__name__", None))
def test_bad_input_is_one_paragraph_exit_2_no_traceback(tmp_path, image_folder, capsys,
                                                        make_cfg, fragments):
    cfg = make_cfg(tmp_path, image_folder)
    code, out, err = cli(["run", str(write_cfg(tmp_path, cfg))], capsys)
    assert code == 2
    assert "Traceback" not in err + out
    message = err.strip()
    assert message.startswith("error: ") and "\n\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_missing_experiment_file(tmp_path, capsys):
    code, _, err = cli(["run", str(tmp_path / "nope.yaml")], capsys)
    assert code == 2 and "does not exist" in err


def test_console_script_runs_for_real(tmp_path):
    """One real subprocess: the installed entry point, its exit code and its stderr."""
    cfg = tiny_experiment(tmp_path, {"root": str(tmp_path / "missing")})
    result = subprocess.run([sys.executable, "-m", "cnnlab.cli", "run",
                             str(write_cfg(tmp_path, cfg))], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "missing" in result.stderr


def test_plan_prints_a_projection_without_training(tmp_path, capsys):
    cfg = tiny_experiment(tmp_path, {"name": "digits"}, train={"epochs": 4})
    code, out, err = cli(["plan", str(write_cfg(tmp_path, cfg)), "--steps", "2"], capsys)
    assert code == 0, err
    assert "MFLOPs per image" in out and "for 4 epochs" in out
    assert not (tmp_path / "runs").exists()

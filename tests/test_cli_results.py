"""End-to-end tests of the result commands on tiny data: run --seeds, compare, report,
predict, evaluate and export."""

import csv
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from cnnlab.cli import main
from conftest import make_image_folder, tiny_experiment


def cli(argv, capsys=None):
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    if capsys is None:
        return code, "", ""
    out = capsys.readouterr()
    return code, out.out, out.err


def write_cfg(folder: Path, cfg: dict, name: str = "exp.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def digits_cfg(tmp: Path, name: str, **train) -> dict:
    cfg = tiny_experiment(tmp, {"name": "digits", "val_split": 0.2, "test_split": 0.2},
                          train={"epochs": 2, "batch_size": 64, "lr": 1e-2, "threads": 1, **train})
    cfg["name"] = name
    return cfg


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """Two digits experiments: `tiny/a` with 2 seeds, `tiny/b` (lower lr) with 1."""
    root = tmp_path_factory.mktemp("lab")
    code, _, _ = cli(["run", write_cfg(root, digits_cfg(root, "tiny/a"), "a.yaml"), "--seeds", 2])
    assert code == 0
    code, _, _ = cli(["run", write_cfg(root, digits_cfg(root, "tiny/b", lr=1e-3), "b.yaml")])
    assert code == 0
    runs = root / "runs"
    a_runs = sorted(p.parent for p in (runs / "tiny" / "a").glob("*/metrics.json"))
    b_runs = sorted(p.parent for p in (runs / "tiny" / "b").glob("*/metrics.json"))
    return {"root": root, "runs": runs, "a": a_runs, "b": b_runs[0]}


# ---------------------------------------------------------------------------- run --seeds

def test_seeds_are_ordinary_runs_grouped_with_consecutive_seeds_and_one_split(lab):
    a1, a2 = lab["a"]
    m1, m2 = (json.loads((d / "metrics.json").read_text()) for d in (a1, a2))
    assert m1["group"] == m2["group"] and m1["group_size"] == 2
    assert sorted([m1["seed"], m2["seed"]]) == [42, 43]
    seeds = sorted(yaml.safe_load((d / "config.yaml").read_text())["train"]["seed"] for d in (a1, a2))
    assert seeds == [42, 43]
    # data.split_seed is untouched, so both seeds saw the same split.
    assert (a1 / "data.json").read_text() == (a2 / "data.json").read_text()
    assert m1["test"]["confusion_matrix"] != m2["test"]["confusion_matrix"] or \
        m1["test"]["log_loss"] != m2["test"]["log_loss"]


def test_seeds_summary_line_gives_mean_and_std(tmp_path, capsys):
    cfg = digits_cfg(tmp_path, "tiny/seeds", epochs=1)
    code, out, err = cli(["run", write_cfg(tmp_path, cfg), "--seeds", 2], capsys)
    assert code == 0, err
    summary = [line for line in out.splitlines() if "seeds completed" in line]
    assert summary and re.search(r"test accuracy \d\.\d{4} ± \d\.\d{4}", summary[0])
    assert "2 of 2 seeds completed" in summary[0] and "train.seed 42-43" in summary[0]
    assert len(list((tmp_path / "runs" / "tiny" / "seeds").glob("*/model.safetensors"))) == 2


# -------------------------------------------------------------------------------- compare

def test_compare_table_aggregates_seeds_and_shows_differing_keys(lab, capsys):
    code, out, err = cli(["compare", lab["runs"], "--baseline", "tiny/a"], capsys)
    assert code == 0, err
    assert "tiny/a" in out and "tiny/b" in out and "±" in out
    assert "baseline" in out and "cannot judge" in out  # tiny/b has a single seed
    assert "Welch" in out


def test_compare_csv_json_md(lab, capsys):
    code, out, _ = cli(["compare", lab["runs"], "--format", "csv", "--sort", "val.accuracy"], capsys)
    assert code == 0
    rows = list(csv.DictReader(out.splitlines()))
    by_name = {r["experiment"]: r for r in rows}
    assert by_name["tiny/a"]["n"] == "2" and by_name["tiny/b"]["n"] == "1"
    assert by_name["tiny/a"]["input"] == "8x8x1" and by_name["tiny/a"]["batch"] == "64"
    metrics = [json.loads((d / "metrics.json").read_text())["test"]["accuracy"] for d in lab["a"]]
    assert float(by_name["tiny/a"]["test.accuracy.mean"]) == pytest.approx(np.mean(metrics))
    assert float(by_name["tiny/a"]["test.accuracy.std"]) == pytest.approx(np.std(metrics, ddof=1))

    code, out, _ = cli(["compare", "tiny/*", "--runs-dir", lab["runs"], "--format", "json"], capsys)
    data = json.loads(out)
    assert code == 0 and data["sort"] == "test.accuracy" and len(data["rows"]) == 2

    out_file = lab["root"] / "compare.md"
    code, out, _ = cli(["compare", lab["runs"], "--format", "md", "--out", out_file], capsys)
    assert code == 0 and out_file.read_text().startswith("| experiment |")


@pytest.mark.parametrize("argv, fragment", [
    (["--sort", "test.nope"], "No run records the metric"),
    (["--baseline", "tiny/zzz"], "not among the rows"),
    (["--format", "xml"], "--format"),
])
def test_compare_user_errors_are_one_paragraph(lab, capsys, argv, fragment):
    code, out, err = cli(["compare", lab["runs"], *argv], capsys)
    assert code == 2 and fragment in err and "Traceback" not in err


def test_compare_unknown_pattern(tmp_path, capsys):
    code, _, err = cli(["compare", "nothing/*", "--runs-dir", tmp_path], capsys)
    assert code == 2 and "neither a path nor a pattern" in err


# --------------------------------------------------------------------------------- report

def test_report_writes_markdown_and_self_contained_html(lab, capsys):
    run, other = lab["a"][0], lab["b"]
    code, out, err = cli(["report", run, "--against", other], capsys)
    assert code == 0, err
    md = (run / "report.md").read_text()
    for heading in ("## Configuration", "### Model architecture", "### Hyperparameters",
                    "### Callbacks", "### Data", "### Augmentation", "## Results",
                    "### Confusion matrix", "### Metrics (test)", "### Training",
                    "### Hardest test images", "## Observations", "## Against tiny/b"):
        assert heading in md, heading
    assert "Best epoch:" in md and "gap" in md and "Total params" in md
    assert "![confusion matrix](confusion_matrix.png)" in md
    assert "![hardest images](hard_examples.png)" in md
    assert "F1 (tiny/b)" in md
    # Per-class rows are ordered by size, largest first.
    table = md.split("### Metrics (test)")[1].split("macro avg")[0]
    sizes = [int(m) for m in re.findall(r"^\| \w+ \| (\d+) \|", table, flags=re.M)]
    assert sizes and sizes == sorted(sizes, reverse=True)

    # Report 000's wide table, with its definitions, after the long one.
    wide = md.split("### Metrics, wide (test; report 000 layout)")[1]
    assert "| metric | Global |" in wide and "| Accuracy |" in wide and "balanced accuracy" in wide
    page = (run / "report.html").read_text()
    assert "F1 Score" in page and "micro-averaged" in page
    assert page.count('src="data:image/png;base64,') == 3
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing loaded from elsewhere
    predictions = list(csv.DictReader((run / "predictions.csv").open()))
    metrics = json.loads((run / "metrics.json").read_text())
    assert len(predictions) == metrics["test"]["n"]
    accuracy = np.mean([r["true"] == r["predicted"] for r in predictions])
    assert accuracy == pytest.approx(metrics["test"]["accuracy"])
    hardest = max(float(r["loss"]) for r in predictions)
    assert f"{hardest:.4f}" in md


def test_report_leaderboard_page(lab, capsys):
    out_file = lab["root"] / "board.html"
    code, out, err = cli(["report", "--leaderboard", lab["runs"], "--out", out_file], capsys)
    assert code == 0, err
    page = out_file.read_text()
    assert 'class="sortable"' in page and "<script>" in page and "Pareto" in page
    assert page.count('src="data:image/png;base64,') == 1
    assert not re.search(r'(src|href)="(?!data:)', page)
    code, _, _ = cli(["report", "--leaderboard", lab["runs"]], capsys)
    assert code == 0 and (lab["runs"] / "leaderboard.html").is_file()


def test_report_needs_exactly_one_run(lab, capsys):
    code, _, err = cli(["report", lab["a"][0], lab["a"][1]], capsys)
    assert code == 2 and "one run folder" in err
    code, _, err = cli(["report", lab["root"]], capsys)
    assert code == 2 and "not a cnnlab run folder" in err


# -------------------------------------------------------------------- predict / evaluate

@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """A tiny model trained on 8x8 RGB class folders."""
    root = tmp_path_factory.mktemp("folder")
    train = make_image_folder(root / "train", classes=("cat", "dog", "frog"), per_class=16, size=8)
    cfg = tiny_experiment(root, {"root": str(train), "val_split": 0.25, "test_split": 0.25},
                          train={"epochs": 3, "lr": 1e-2, "threads": 1})
    code, _, _ = cli(["run", write_cfg(root, cfg)])
    assert code == 0
    return next((root / "runs").rglob("model.safetensors")).parent


def test_predict_folder_image_and_csv(folder_run, tmp_path, capsys):
    images = make_image_folder(tmp_path / "new", classes=("cat", "dog"), per_class=3, size=12,
                               seed=5)
    out = tmp_path / "submission.csv"
    code, stdout, err = cli(["predict", folder_run, images, "--out", out, "--probabilities"], capsys)
    assert code == 0, err
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["id", "label", "cat", "dog", "frog"]
    assert [r["id"] for r in rows] == [f"{c}/{i:03d}" for c in ("cat", "dog") for i in range(3)]
    for row in rows:
        probs = [float(row[c]) for c in ("cat", "dog", "frog")]
        assert sum(probs) == pytest.approx(1.0, abs=1e-4)
        assert row["label"] == ("cat", "dog", "frog")[int(np.argmax(probs))]
    assert "wrote 6 predictions" in stdout

    single = tmp_path / "one.csv"
    code, _, _ = cli(["predict", folder_run, images / "dog" / "001.png", "--out", single, "--tta"],
                     capsys)
    assert code == 0 and single.read_text().splitlines()[0] == "id,label"
    assert single.read_text().splitlines()[1].startswith("001,")

    listing = tmp_path / "test.csv"
    listing.write_text("id,path\n7,new/cat/000.png\n8,new/dog/002.png\n")
    code, _, err = cli(["predict", folder_run, listing, "--out", tmp_path / "s2.csv"], capsys)
    assert code == 0, err
    by_csv = {r["id"]: r["label"] for r in csv.DictReader((tmp_path / "s2.csv").open())}
    assert by_csv == {"7": rows[0]["label"], "8": rows[5]["label"]}


@pytest.mark.parametrize("make_input, fragment", [
    (lambda tmp: tmp / "missing", "does not exist"),
    (lambda tmp: (tmp / "notes.txt").write_text("x") and tmp / "notes.txt", "neither a folder"),
    (lambda tmp: (tmp / "l.csv").write_text("name,path\na,x.png\n") and tmp / "l.csv", "'id' column"),
    (lambda tmp: (tmp / "l.csv").write_text("id,path\na,gone.png\n") and tmp / "l.csv", "line 2"),
])
def test_predict_bad_inputs(folder_run, tmp_path, capsys, make_input, fragment):
    code, _, err = cli(["predict", folder_run, make_input(tmp_path), "--out", tmp_path / "o.csv"],
                       capsys)
    assert code == 2 and fragment in err and "Traceback" not in err


def test_evaluate_writes_an_evaluation_folder(folder_run, tmp_path, capsys):
    other = make_image_folder(tmp_path / "other", classes=("cat", "frog"), per_class=5, size=20,
                              seed=9)
    code, out, err = cli(["evaluate", folder_run, "--data-root", other], capsys)
    assert code == 0, err
    (eval_dir,) = (folder_run / "evaluations").iterdir()
    for name in ("metrics.json", "per_class.csv", "confusion_matrix.csv", "confusion_matrix.png",
                 "predictions.csv", "metrics_wide.csv", "metrics_wide.md"):
        assert (eval_dir / name).is_file(), name
    record = json.loads((eval_dir / "metrics.json").read_text())
    assert record["kind"] == "evaluation" and record["eval"]["n"] == 10
    assert record["eval"]["per_class"]["dog"]["support"] == 0
    assert str(eval_dir) in out and "accuracy" in out


def test_evaluate_refuses_unknown_classes(folder_run, tmp_path, capsys):
    other = make_image_folder(tmp_path / "other", classes=("cat", "horse"), per_class=2, size=8)
    code, _, err = cli(["evaluate", folder_run, "--data-root", other], capsys)
    assert code == 2 and "horse" in err and "cat, dog, frog" in err


def test_predict_on_1000_images_agrees_with_evaluate(folder_run, tmp_path, capsys):
    classes = ("cat", "dog", "frog")
    folder = make_image_folder(tmp_path / "many", classes=classes, per_class=334, size=8, seed=3)
    (folder / "frog" / "333.png").unlink()
    (folder / "frog" / "332.png").unlink()  # 1,000 images
    out = tmp_path / "submission.csv"
    code, _, err = cli(["predict", folder_run, folder, "--out", out], capsys)
    assert code == 0, err
    predicted = {r["id"]: r["label"] for r in csv.DictReader(out.open())}
    assert len(predicted) == 1000 and set(predicted.values()) <= set(classes)
    evaluations = folder_run / "evaluations"
    before = set(evaluations.iterdir()) if evaluations.is_dir() else set()
    code, _, err = cli(["evaluate", folder_run, "--data-root", folder], capsys)
    assert code == 0, err
    (eval_dir,) = set(evaluations.iterdir()) - before  # the fixture's run is shared
    evaluated = {r["id"]: r["predicted"] for r in csv.DictReader((eval_dir / "predictions.csv").open())}
    assert evaluated == predicted


# --------------------------------------------------------------------------------- export

@pytest.mark.parametrize("fmt, filename", [("onnx", "model.onnx"),
                                           ("torchscript", "model.torchscript.pt")])
def test_export_is_checked_against_pytorch(folder_run, capsys, fmt, filename):
    code, out, err = cli(["export", folder_run, "--format", fmt], capsys)
    assert code == 0, err
    assert (folder_run / filename).is_file() and "passed" in out and "max abs difference" in out
    record = json.loads((folder_run / "export.json").read_text())[fmt]
    assert record["passed"] and record["max_abs_diff"] < 1e-4 and record["tolerance"] == 1e-4
    assert record["classes"] == ["cat", "dog", "frog"]

    from cnnlab.store.artifact import load_run

    saved = load_run(folder_run)
    pixels = torch.randint(0, 256, (5, *saved.in_shape), generator=torch.Generator().manual_seed(1)
                           ).float()
    with torch.no_grad():
        expected = saved.classifier(pixels).softmax(dim=1).numpy()
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(folder_run / filename), providers=["CPUExecutionProvider"])
        (got,) = session.run(None, {"pixels": pixels.numpy()})  # another batch size than exported
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still works
            got = torch.jit.load(str(folder_run / filename))(pixels).detach().numpy()
    assert np.abs(got - expected).max() < 1e-4


def test_export_unknown_format(folder_run, capsys):
    code, _, err = cli(["export", folder_run, "--format", "tflite"], capsys)
    assert code == 2 and "onnx, torchscript" in err

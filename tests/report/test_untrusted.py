"""Report pages say what they mean and treat recorded text as text.

Every nested setting of the training schema renders under its own name (never ``?(...)``),
and class names or a run name holding HTML show as text in report.html, also in Chromium.
"""

from __future__ import annotations

import html
import json
import typing

import pytest
import yaml
from pydantic import BaseModel

from cnnlab.cli import main
from cnnlab.config.schema import TrainConfig
from cnnlab.report.page import hyperparameters
from conftest import make_image_folder, tiny_experiment


def _model_of(annotation):
    """The pydantic model a field holds (through Optional/Annotated), or None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _nested_settings() -> dict[str, dict]:
    """Every optional nested setting of the train schema, switched on with its defaults."""
    found = {}
    for key, field in TrainConfig.model_fields.items():
        model = _model_of(field.annotation)
        if model is not None and field.default is None:
            found[key] = {k: 1 for k, f in model.model_fields.items() if f.is_required()}
    return found


def test_the_walk_finds_the_nested_settings() -> None:
    assert {"schedule", "lookahead", "ema", "early_stopping"} <= set(_nested_settings())


@pytest.mark.parametrize("key, value", sorted(_nested_settings().items()))
def test_no_setting_renders_without_a_name(key, value) -> None:
    # One at a time: some settings exclude each other (schedule and reduce_lr_on_plateau).
    train = TrainConfig(**{key: value}, optimizer="muon").model_dump(mode="json")
    rows = hyperparameters(train)
    cells = [cell for row in rows for cell in row]
    assert not [c for c in cells if "?" in c or c.startswith("(")], rows


def test_schedule_and_lookahead_show_their_names() -> None:
    shown = dict(hyperparameters(TrainConfig(schedule={"warmup": 0.23}, lookahead={"k": 5})
                                 .model_dump(mode="json")))
    assert shown["schedule"].startswith("linear(warmup=0.23")
    assert shown["lookahead"].startswith("lookahead(k=5, alpha=0.5")


PAYLOAD = "<img src=x onerror=\"document.documentElement.setAttribute('data-pwned','1')\">"


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory):
    """report.html of a run whose class names and (edited) run name are HTML."""
    tmp = tmp_path_factory.mktemp("hostile")
    folder = make_image_folder(tmp / "images", classes=(PAYLOAD, "<b>bold</b-ish", "plain"),
                               per_class=8, size=8)
    cfg = tiny_experiment(tmp, {"root": str(folder), "val_split": 0.25, "test_split": 0.25})
    (tmp / "exp.yaml").write_text(yaml.safe_dump(cfg))
    for argv in (["run", str(tmp / "exp.yaml")], None):
        if argv is None:  # a shared run folder is untrusted: its name may have been edited
            run = next((tmp / "runs").rglob("metrics.json")).parent
            config = yaml.safe_load((run / "config.yaml").read_text())
            config["name"] = "<script>document.title='pwned'</script>"
            (run / "config.yaml").write_text(yaml.safe_dump(config))
            metrics = json.loads((run / "metrics.json").read_text())
            metrics["name"] = config["name"]
            (run / "metrics.json").write_text(json.dumps(metrics))
            argv = ["report", str(run), "--hard-examples", "4"]
        try:
            main(argv)
        except SystemExit as exc:
            assert not exc.code, argv
    return run / "report.html"


def test_html_in_names_is_escaped(hostile_report) -> None:
    page = hostile_report.read_text(encoding="utf-8")
    assert PAYLOAD not in page and "<script>document" not in page
    assert html.escape(PAYLOAD) in page or html.escape(PAYLOAD, quote=False) in page
    assert "&lt;script&gt;" in page


def test_html_in_names_stays_text_in_chromium(hostile_report, tmp_path) -> None:
    from test_html_chromium import chromium, probe

    attrs = probe(chromium(), hostile_report, tmp_path)
    assert attrs.get("data-probe") == "done", attrs
    assert "data-pwned" not in attrs
    assert json.loads(attrs["data-errors"]) == []

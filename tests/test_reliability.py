"""Runs the catalogue of bad inputs (tests/reliability_cases.py: each row is an input a user can
get wrong, the exit code `cnnlab` must give and words its one-paragraph message must hold).

The same table generates docs/reliability.md (``CNNLAB_WRITE_RELIABILITY_DOC=1 pytest
tests/test_reliability.py -k doc`` rewrites it; without the variable the test fails when the
committed page and the table differ, so the page cannot drift). Every case drives the CLI
in-process; an exception other than SystemExit (a traceback) fails the case: it is a bug.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from cnnlab.cli import main
from conftest import REPO, tiny_experiment
from reliability_cases import CASES, Case, Ctx

DOC = REPO / "docs" / "reliability.md"


# ------------------------------------------------------------------------------- the tests

@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("trained")
    cfg = tiny_experiment(root, {"name": "digits", "max_per_class": 30},
                          train={"checkpoint": {"monitor": "val_loss"}})
    path = root / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    _run(["run", str(path)])
    return next((root / "runs").rglob("model.safetensors")).parent


def _run(argv: list[str]) -> int:
    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_case_ids_are_unique() -> None:
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_catalogue(case: Case, tmp_path, trained, capsys) -> None:
    ctx = Ctx(tmp_path / "case", trained)
    ctx.tmp.mkdir()
    argv = case.setup(ctx)
    capsys.readouterr()
    code = _run(argv)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    assert code == case.code, captured.err
    message = " ".join(captured.err.split()).lower()
    for word in case.words:
        assert " ".join(word.split()).lower() in message, (word, captured.err)
    if case.check is not None:
        case.check(ctx)


def render_doc(cases: list[Case]) -> str:
    lines = ["# Reliability: what cnnlab does with bad input", "",
             "Generated from the table in `tests/reliability_cases.py` (every row is a test; "
             "rewrite this page with `CNNLAB_WRITE_RELIABILITY_DOC=1 pytest "
             "tests/test_reliability.py -k doc`). Exit code 2 means a one-paragraph `error:` "
             "message on stderr and no traceback; the words listed are in that message.", ""]
    for area in dict.fromkeys(case.area for case in cases):
        lines += [f"## {area}", "", "| case | bad input | exit | the message says |",
                  "|---|---|---|---|"]
        for case in (c for c in cases if c.area == area):
            words = ", ".join(f"“{w}”" for w in case.words) or "(works: nothing to refuse)"
            lines.append(f"| `{case.id}` | {case.bad_input.replace('|', '/')} | {case.code} | "
                         f"{words.replace('|', '/')} |")
        lines.append("")
    return "\n".join(lines)


def test_doc_matches_the_table() -> None:
    text = render_doc(CASES) + "\n" + DOC_TAIL
    if os.environ.get("CNNLAB_WRITE_RELIABILITY_DOC"):
        DOC.write_text(text, encoding="utf-8")
    assert DOC.is_file() and DOC.read_text(encoding="utf-8") == text, (
        "docs/reliability.md differs from the table: rerun with CNNLAB_WRITE_RELIABILITY_DOC=1")


DOC_TAIL = """## Also guaranteed (tests elsewhere)

* A run name never places files outside `runs_dir`: `store.paths.safe_run_path` refuses
  absolute names, `.`/`..` parts, NUL bytes and names that resolve outside through symlinks
  (also for sweeps); two runs of one name started in the same second get distinct folders.
* `data` keys a source does not read are refused when set to anything but their default:
  `root` (read by imagefolder, npz and the torchvision sources, not by digits). `download`,
  `cache` and `cache_dir` are accepted everywhere: they change how data is fetched or cached,
  never which images are used. `test_split` is not checked (a source's own test split makes
  it moot at load time).
* Every image is decoded (and oversized headers refused) before the first training step;
  an `image_size` whose uint8 tensors would not fit in the memory available is refused
  before anything is allocated (`data/memory.py`).
* `predict --out`, `compare --out`, `report --leaderboard --out` and `export` write through
  a temporary file and a rename, and refuse an output that is a symbolic link.
* A full or read-only disk during a run is a message (exit 2) and the run's metrics.json
  says `failed` with the reason; `cnnlab resume` continues once space is free
  (tests/store/test_faults.py).
* A resumed run trains what the uninterrupted run would have: `train.seed` fixes the initial
  weights (as Keras's `set_random_seed`), and each epoch's batch order, augmentation and
  dropout draws come from (seed, epoch) alone (`data/loader.py`'s `EpochSeededSampler`,
  `train/fit.py`'s `EpochSeeding`). Before 2026-12-07 a resumed run replayed epoch 1's order
  and random draws and the initial weights ignored the seed;
  `tests/test_pipeline.py::test_resumed_run_trains_what_the_uninterrupted_run_trains` checks
  that an interrupted and resumed run's per-epoch losses equal a whole run's.
* A resumed run continues after the last finished epoch, not after the best one:
  `checkpoints/last.ckpt` is written at every epoch's end. Before 2026-12-07 Lightning's
  `save_last=True` wrote it only in epochs that improved the monitored metric (so a resume
  redid every epoch since the best), and a run with `checkpoint: null` had no last.ckpt and
  could not be resumed at all; the same test covers a metric that stops improving and
  `checkpoint: null`.
* Config fuzzing (tests/config/test_fuzz.py): random experiment dicts and `--set` strings only
  ever validate or give a ConfigError (exit 2).
"""

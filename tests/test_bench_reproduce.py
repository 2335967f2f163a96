"""docs/reproduction.md covers every recipe and is what bench/reproduce.py generates."""

from __future__ import annotations

import importlib.util
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

"""The recipe book: one experiment file per experiment of the reference reports, under ``recipes/``,
and the reports' series and searches as sweep files (``*.sweep.yaml``, run with ``cnnlab sweep``).

Each recipe starts with comment lines citing where it comes from, e.g.::

    # Report 002 (CIFAR-10 progressive CNN), step 1: 2-conv net: Conv(32)x2, MaxPool, Flatten.
    # Published test accuracy: 62.07%. Adam, cross-entropy, 30 epochs, batch 128 unless noted;

:func:`list_recipes` finds them and reads that header (the files themselves are validated
when run, with :func:`cnnlab.config.load_config`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from cnnlab.errors import ConfigError

#: The repository's recipe folder, for a source checkout (src/cnnlab/../../recipes).
PACKAGE_RECIPES = Path(__file__).resolve().parents[2] / "recipes"

# "Published test accuracy: 62.07%", "Published validation accuracy: 46.57%" and the older
# "Published: test accuracy 0.8963 (val 0.9059)".
_PUBLISHED = re.compile(
    r"Published\b[^.\n]*?\b(test|validation|val) accuracy:?\s*(\d+(?:\.\d+)?)\s*(%?)",
    re.IGNORECASE)


@dataclass(frozen=True)
class Recipe:
    """One recipe file and what its header says."""

    #: Path relative to the recipes root without ``.yaml``, '/'-separated: ``report002/07_dropout_ramp``.
    name: str
    path: Path
    #: The header's citation line without ``# ``: the first comment line starting with
    #: ``Report``, else the first comment line ("" when the file has no header).
    citation: str
    #: The accuracy the report published for this experiment, as a fraction (0.6207), if any.
    published_accuracy: float | None = None
    #: Which split that accuracy is on: ``test`` or ``validation`` (None without one).
    published_split: str | None = None

    @property
    def kind(self) -> str:
        """``sweep`` for ``*.sweep.yaml`` files (run with ``cnnlab sweep``), else ``experiment``."""
        return "sweep" if self.path.name.endswith(".sweep.yaml") else "experiment"

    @property
    def command(self) -> str:
        return f"cnnlab {'sweep' if self.kind == 'sweep' else 'run'} {self.path}"

    def load(self, overrides: Iterable[str] = ()):
        """The validated :class:`~cnnlab.config.ExperimentConfig` (``--set``-style overrides);
        for a sweep recipe, the checked sweep (:class:`~cnnlab.sweep.LoadedSweep`)."""
        if self.kind == "sweep":
            from cnnlab.sweep import load_sweep

            return load_sweep(self.path, experiment_overrides=list(overrides))
        from cnnlab.config import load_config

        return load_config(self.path, overrides)


def default_root() -> Path:
    """``./recipes`` if it exists, else the ``recipes/`` folder of the source checkout."""
    local = Path("recipes")
    return local if local.is_dir() else PACKAGE_RECIPES


def list_recipes(root: Path | str | None = None) -> list[Recipe]:
    """Every ``*.yaml`` under ``root`` (default: :func:`default_root`), sorted by name.

    An explicit ``root`` that is not a folder is an error; a missing default root (an
    installed package without a checkout) gives an empty list.
    """
    if root is None:
        root = default_root()
        if not root.is_dir():
            return []
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"The recipe folder {root} does not exist (or is not a folder).")
    recipes = [read_recipe(path, root) for path in root.rglob("*.yaml") if path.is_file()]
    return sorted(recipes, key=lambda r: r.name)


def read_recipe(path: Path, root: Path) -> Recipe:
    """The :class:`Recipe` of ``path``, named relative to ``root``."""
    header = _header_comments(path)
    citation = next((line for line in header if line.startswith("Report")),
                    header[0] if header else "")
    accuracy = split = None
    match = _PUBLISHED.search("\n".join(header))
    if match:
        value = float(match.group(2))
        accuracy = round(value / 100.0 if match.group(3) or value > 1.0 else value, 6)
        split = "test" if match.group(1).lower() == "test" else "validation"
    name = path.relative_to(root).with_suffix("").as_posix()
    return Recipe(name=name, path=path, citation=citation, published_accuracy=accuracy,
                  published_split=split)


def _header_comments(path: Path) -> list[str]:
    """The comment lines before the first YAML line, without ``#`` and surrounding spaces."""
    lines: list[str] = []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Cannot read the recipe {path}: {exc}") from None
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("#"):
            break
        lines.append(stripped.lstrip("#").strip())
    return lines

"""``cnnlab recipes | datasets | models | augmentations | losses | layers``: the commands that
list what cnnlab holds (recipes and each registry), registered on the main app by cli.py."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def register(app: typer.Typer) -> None:
    """Add the listing commands to ``app`` as top-level commands (``cnnlab models``)."""
    for command in (recipes, datasets, models, augmentations, losses, layers):
        app.command()(command)


def recipes(pattern: str = typer.Argument("*", help="glob over recipe names")) -> None:
    """List the ready experiments of the reference reports (run one with `cnnlab run <path>`)."""
    import fnmatch

    from cnnlab.recipes import list_recipes

    table = Table(title="recipes", caption="run one: cnnlab run recipes/<recipe>.yaml; a sweep: "
                  "cnnlab sweep recipes/<recipe>.yaml")
    table.add_column("recipe", no_wrap=True)  # a name to copy: never split over lines
    for column in ("kind", "published", "source"):
        table.add_column(column, overflow="fold")
    for recipe in list_recipes():
        if fnmatch.fnmatch(recipe.name, pattern):
            published = (f"{100 * recipe.published_accuracy:.2f}% {recipe.published_split}"
                         if recipe.published_accuracy is not None else "")
            table.add_row(recipe.name, recipe.kind, published, recipe.citation)
    console.print(table)


def datasets(pattern: str = typer.Argument("*", help="glob over names")) -> None:
    """List the dataset sources."""
    from cnnlab.data import DATASETS

    _print_registry("dataset", DATASETS.describe(pattern))


def models(pattern: str = typer.Argument("*", help="glob over names"),
           backbones: bool = typer.Option(False, "--backbones", help="list the timm and "
                                          "torchvision names model.backbone accepts, and "
                                          "whether their weights are on this machine")) -> None:
    """List the model builders (or, with --backbones, the backbone names)."""
    if backbones:
        from cnnlab.models.backbones import list_backbones

        rows = list_backbones(pattern)
        table = Table(title="backbones", caption="weights: offline = cached here (or in an "
                      "installed pip package: set model.pretrained as shown), download = "
                      "fetched on first use, none = random init only (pretrained: false)")
        table.add_column("backbone")
        table.add_column("weights")
        for row in rows:
            table.add_row(row.name, row.weights)
        console.print(table)
        offline = sum(row.weights.startswith("offline") for row in rows)
        console.print(f"{len(rows)} backbones, {offline} with weights offline", markup=False,
                      highlight=False, soft_wrap=True)
        return
    from cnnlab.models import MODELS

    _print_registry("model", MODELS.describe(pattern))


def augmentations(pattern: str = typer.Argument("*", help="glob over names")) -> None:
    """List the batch augmentations."""
    from cnnlab.data.augment import AUGMENTATIONS

    _print_registry("augmentation", AUGMENTATIONS.describe(pattern))


def losses(pattern: str = typer.Argument("*", help="glob over names")) -> None:
    """List the losses."""
    from cnnlab.train import LOSSES

    _print_registry("loss", LOSSES.describe(pattern))


def layers(pattern: str = typer.Argument("*", help="glob over names")) -> None:
    """List the layer types of `model.layers`."""
    from cnnlab.models import LAYERS

    _print_registry("layer", LAYERS.describe(pattern))


def _print_registry(kind: str, rows: list[tuple[str, str]]) -> None:
    table = Table(title=f"{kind}es" if kind.endswith("s") else f"{kind}s", show_lines=False)
    table.add_column(kind)
    table.add_column("description")
    for name, description in rows:
        table.add_row(name, description)
    console.print(table)

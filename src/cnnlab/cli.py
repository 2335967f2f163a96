"""The ``cnnlab`` command: run an experiment, resume one, list what the registries hold.

User errors (a :class:`CnnlabError` from any layer) are printed once, here, as one paragraph
with exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from cnnlab.errors import CnnlabError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="cnnlab: convolutional image classification, one YAML file per experiment.")
console = Console()
err_console = Console(stderr=True)


@app.command()
def run(
    experiment: Path = typer.Argument(..., help="experiment YAML file"),
    set_: list[str] = typer.Option([], "--set", help="override a value: --set train.lr=1e-3"),
    runs_dir: Optional[Path] = typer.Option(None, "--runs-dir", help="root of run folders"),
) -> None:
    """Train, evaluate and record one experiment."""
    from cnnlab.config import load_config
    from cnnlab.pipeline import run_experiment

    overrides = list(set_) + ([f"runs_dir={runs_dir}"] if runs_dir else [])
    cfg = load_config(experiment, overrides)
    outcome = run_experiment(cfg, say=_say)
    _finish(outcome)


@app.command()
def resume(run_dir: Path = typer.Argument(..., help="run folder of an interrupted run")) -> None:
    """Continue an interrupted run from its last checkpoint."""
    from cnnlab.pipeline import resume_experiment

    _finish(resume_experiment(run_dir, say=_say))


@app.command()
def datasets(pattern: str = typer.Argument("*", help="glob over names")) -> None:
    """List the dataset sources."""
    from cnnlab.data import DATASETS

    _print_registry("dataset", DATASETS.describe(pattern))


@app.command()
def models(pattern: str = typer.Argument("*", help="glob over names")) -> None:
    """List the model builders."""
    from cnnlab.models import MODELS

    _print_registry("model", MODELS.describe(pattern))


@app.command()
def augmentations(pattern: str = typer.Argument("*", help="glob over names")) -> None:
    """List the batch augmentations."""
    from cnnlab.data.augment import AUGMENTATIONS

    _print_registry("augmentation", AUGMENTATIONS.describe(pattern))


@app.command()
def losses(pattern: str = typer.Argument("*", help="glob over names")) -> None:
    """List the losses."""
    from cnnlab.train import LOSSES

    _print_registry("loss", LOSSES.describe(pattern))


@app.command()
def layers(pattern: str = typer.Argument("*", help="glob over names")) -> None:
    """List the layer types of `model.layers`."""
    from cnnlab.models import LAYERS

    _print_registry("layer", LAYERS.describe(pattern))


def _print_registry(kind: str, rows: list[tuple[str, str]]) -> None:
    table = Table(title=f"{kind}s", show_lines=False)
    table.add_column(kind)
    table.add_column("description")
    for name, description in rows:
        table.add_row(name, description)
    console.print(table)


def _say(text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _finish(outcome) -> None:
    from cnnlab.report.tables import per_class_table

    metrics = outcome.metrics
    for split in ("val", "test"):
        if split in metrics and split == ("test" if "test" in metrics else "val"):
            console.print(per_class_table(metrics[split], title=f"{metrics['name']}: {split}"))
    parts = [f"status {metrics['status']}"]
    for split in ("val", "test"):
        if split in metrics:
            parts.append(f"{split} accuracy {metrics[split]['accuracy']:.4f}")
    if metrics.get("epochs_run") is not None:
        parts.append(f"{metrics['epochs_run']} epochs (best {metrics.get('best_epoch')})")
    if metrics.get("train_seconds") is not None:
        parts.append(f"{metrics['train_seconds']:.1f} s training")
    console.print(", ".join(parts), markup=False, highlight=False, soft_wrap=True)
    if metrics.get("resume"):
        console.print(f"resume with: {metrics['resume']}", markup=False, highlight=False, soft_wrap=True)
    console.print(f"results: {outcome.run_dir}", markup=False, highlight=False, soft_wrap=True)
    if metrics["status"] not in ("completed",):
        raise typer.Exit(1)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors -> one paragraph on stderr and exit code 2."""
    try:
        code = app(args=argv, standalone_mode=False)
    except CnnlabError as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted", markup=False)
        sys.exit(130)
    except Exception as exc:  # click's usage errors carry their own exit code (2)
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(1)
        raise
    # Without standalone mode, click returns a command's typer.Exit code instead of exiting.
    if isinstance(code, int) and code:
        sys.exit(code)


if __name__ == "__main__":
    main()

"""``cnnlab data ...``: commands that convert data, registered on the main app by cli.py."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from cnnlab.errors import CnnlabError

data_app = typer.Typer(no_args_is_help=True, help="Convert data: pack folders into shards.")
_console = Console()


@data_app.command("pack")
def pack_command(
    source: Path = typer.Argument(..., help="an image folder (root/<class>/*.jpg or "
                                  "root/{train,val,test}/<class>/), or an experiment YAML whose "
                                  "data section is read"),
    out: Path = typer.Argument(..., help="new or empty folder for the shards and pack.json"),
    fmt: str = typer.Option(..., "--format", help="tfrecord | webdataset"),
    shard_size: str = typer.Option("256MB", "--shard-size", help="roll over to a new file at "
                                   "this size (KB/MB/GB, KiB/MiB/GiB)"),
    image_size: Optional[int] = typer.Option(None, "--image-size", min=1, help="resize to this "
                                             "square size (default: the experiment's "
                                             "data.image_size, or the source's size)"),
    channels: Optional[int] = typer.Option(None, "--channels", min=1, max=3, help="1 or 3"),
    max_per_class: Optional[int] = typer.Option(None, "--max-per-class", min=1,
                                                help="a seeded sample of at most N per class"),
    val_split: float = typer.Option(0.0, "--val-split", min=0.0, max=0.9, help="hold out this "
                                    "stratified fraction of train as separate val files"),
    quality: int = typer.Option(90, "--quality", min=1, max=100, help="JPEG quality"),
    seed: int = typer.Option(0, "--seed", help="seed of the record order and the val hold-out"),
    workers: int = typer.Option(0, "--workers", min=0, help="decoding processes (0: this one)"),
) -> None:
    """Write a source's images as TFRecord files or WebDataset shards (JPEG, shuffled order)."""
    from cnnlab.config.schema import DataConfig
    from cnnlab.data.pack import FORMATS, pack, parse_size

    if fmt not in FORMATS:
        raise CnnlabError(f"--format {fmt!r} is not one of {', '.join(FORMATS.names())}.")
    if source.is_dir():
        cfg = DataConfig(name="imagefolder", root=source)
    elif source.is_file():
        from cnnlab.config import load_config

        cfg = load_config(source, []).data
    else:
        raise CnnlabError(f"{source} is neither an image folder nor an experiment file.")
    update = {k: v for k, v in {"image_size": image_size, "channels": channels,
                                "max_per_class": max_per_class}.items() if v is not None}
    cfg = DataConfig.model_validate({**cfg.model_dump(exclude_unset=True), **update})
    record = pack(cfg, out, fmt, shard_bytes=parse_size(shard_size), quality=quality,
                  val_split=val_split, seed=seed, workers=workers,
                  say=lambda text: _console.print(text, markup=False, highlight=False))
    files = ", ".join(f"{part}: [{', '.join(v)}]" for part, v in record["data"]["files"].items())
    _console.print(f"wrote {out}/pack.json; read it with  data: {{name: {fmt}, files: {{{files}}}}}",
                   markup=False, highlight=False, soft_wrap=True)

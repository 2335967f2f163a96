"""The catalogue of bad inputs behind tests/test_reliability.py, as data: each `Case` is an
input a user can get wrong (its setup writes the files and returns the CLI arguments), the exit
code `cnnlab` must give and words its one-paragraph message must hold."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file, save_file

from conftest import make_image_folder, tiny_experiment
from shard_fixtures import png_bytes, write_tar, write_tfrecord


@dataclass
class Ctx:
    """What a case's setup gets: a fresh folder, and the path of a trained digits run."""
    tmp: Path
    trained: Path

    def run_copy(self) -> Path:
        """A copy of the trained run that a case may damage."""
        return Path(shutil.copytree(self.trained, self.tmp / "run_copy"))

    def config(self, data: dict | None = None, **sections) -> dict:
        return tiny_experiment(self.tmp, data or {"name": "digits"}, **sections)

    def write(self, cfg: dict | str | bytes, name: str = "exp.yaml") -> str:
        path = self.tmp / name
        if isinstance(cfg, bytes):
            path.write_bytes(cfg)
        else:
            path.write_text(cfg if isinstance(cfg, str) else yaml.safe_dump(cfg))
        return str(path)

    def folder(self, **kwargs) -> Path:
        return make_image_folder(self.tmp / "images", **kwargs)

    def run_folder(self, folder: Path, **data) -> list[str]:
        return ["run", self.write(self.config({"root": str(folder), **data}))]


@dataclass
class Case:
    id: str
    area: str
    bad_input: str  # what the user did, as the doc shows it
    setup: Callable[[Ctx], list[str]]  # -> the CLI arguments
    code: int
    words: tuple[str, ...]  # each must appear in stderr (case-insensitive)
    check: Callable[[Ctx], None] | None = None  # further assertions after the command


# ------------------------------------------------------------------------------ helpers

def _png_header(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR claiming width x height, with one tiny IDAT."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def _bad_image(kind: str) -> Callable[[Ctx], list[str]]:
    def setup(ctx: Ctx) -> list[str]:
        folder = ctx.folder(classes=("cat", "dog"), per_class=6)
        target = folder / "dog" / "bad_0007.png"
        good = (folder / "dog" / "000.png").read_bytes()
        target.write_bytes({"zero": b"", "corrupt": os.urandom(300),
                            "truncated": good[: len(good) // 2],
                            "bomb": _png_header(50_000, 50_000)}[kind])
        return ctx.run_folder(folder)
    return setup


def _alias_bomb(ctx: Ctx) -> list[str]:
    lines = ["x0: &x0 [a, a, a, a, a, a, a, a, a]"]
    lines += [f"x{i}: &x{i} [" + ", ".join([f"*x{i - 1}"] * 9) + "]" for i in range(1, 9)]
    return ["run", ctx.write("\n".join([*lines, "name: bomb", "description: *x8", ""]))]


def _npz(kind: str) -> Callable[[Ctx], list[str]]:
    def setup(ctx: Ctx) -> list[str]:
        path = ctx.tmp / "data.npz"
        if kind == "not-npz":
            path.write_bytes(b"PK\x03\x04 not really a zip")
        elif kind == "no-y":
            np.savez(path, x=np.zeros((4, 8, 8), np.uint8))
        else:  # object arrays need pickle, which cnnlab never loads
            np.savez(path, x=np.array([object()] * 4, dtype=object), y=np.zeros(4, np.int64))
        return ["run", ctx.write(ctx.config({"name": "npz", "root": str(path)}))]
    return setup


def _csv(kind: str) -> Callable[[Ctx], list[str]]:
    """A Kaggle layout (train.csv of id,label + train/<id>.png) with one thing wrong."""
    def setup(ctx: Ctx) -> list[str]:
        folder = ctx.tmp / "train"
        folder.mkdir()
        for i in range(6):
            Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(folder / f"{i}.png")
        rows = [f"{i},{'ab'[i % 2]}" for i in range(6)]
        header, data = "id,label", {}
        if kind == "missing-image":
            rows.append("17,a")
        elif kind == "unknown-label":
            rows[3] = "3,c"
            data = {"classes": ["a", "b"]}
        elif kind == "missing-column":
            data = {"label_column": "class"}
        text = "" if kind == "empty" else "\n".join([header, *rows]) + "\n"
        (ctx.tmp / "train.csv").write_text(text)
        return ["run", ctx.write(ctx.config({"name": "csv", "root": str(ctx.tmp / "train.csv"),
                                             "image_dir": str(folder), **data}))]
    return setup


def _skipped_listed(ctx: Ctx) -> None:
    info = json.loads(next(ctx.tmp.rglob("data.json")).read_text())
    assert [Path(e["file"]).name for e in info["skipped_images"]["files"]] == ["bad_0007.png"]


def _no_training(ctx: Ctx) -> None:
    """The bad image was found before any training step: no epoch, no checkpoint."""
    assert not list(ctx.tmp.rglob("history.csv")) and not list(ctx.tmp.rglob("*.ckpt"))


def _mixed_modes(ctx: Ctx) -> list[str]:
    folder = ctx.folder(classes=("cat", "dog"), per_class=6)
    rgb = np.asarray(Image.open(folder / "cat" / "000.png"))
    Image.fromarray(rgb).convert("L").save(folder / "cat" / "gray.png")
    Image.fromarray(rgb).convert("RGBA").save(folder / "cat" / "alpha.png")
    Image.fromarray(rgb).convert("P").save(folder / "dog" / "palette.png")
    Image.fromarray((rgb[..., 0].astype(np.uint16) * 257)).save(folder / "dog" / "deep16.png")
    Image.fromarray(rgb).save(folder / "dog" / "bitmap.bmp")
    return ["plan", ctx.write(ctx.config({"root": str(folder)})), "--steps", "1"]


def _name(value: str) -> Callable[[Ctx], list[str]]:
    return lambda ctx: ["run", ctx.write(ctx.config()), "--set", f"name={value}"]


def _nothing_outside(ctx: Ctx) -> None:
    # Everything the command wrote must be under runs_dir (tmp/runs) or be the config itself.
    written = [p for p in ctx.tmp.parent.rglob("*") if p.is_file()
               and ctx.tmp not in p.parents]
    assert not written, written
    assert not (ctx.tmp / "runs").exists() or not any((ctx.tmp / "runs").rglob("config.yaml"))


def _symlinked_name(ctx: Ctx) -> list[str]:
    outside = ctx.tmp / "outside"
    outside.mkdir()
    (ctx.tmp / "runs").mkdir()
    (ctx.tmp / "runs" / "shared").symlink_to(outside, target_is_directory=True)
    return ["run", ctx.write(ctx.config(name="shared/x"))]


def _assert_empty(folder: Path) -> None:
    assert not any(folder.iterdir()), list(folder.iterdir())


def _empty_folder(ctx: Ctx) -> list[str]:
    (ctx.tmp / "empty").mkdir()
    return ctx.run_folder(ctx.tmp / "empty")


def _backbone(ctx: Ctx, weights: Path) -> list[str]:
    cfg = ctx.config(model={"name": "backbone", "backbone": f"cnnlab:{ctx.trained}",
                            "pretrained": str(weights), "head": [{"flatten": {}}]})
    cfg["model"].pop("layers", None)
    return ["run", ctx.write(cfg)]


def _weights(kind: str) -> Callable[[Ctx], list[str]]:
    def setup(ctx: Ctx) -> list[str]:
        source = ctx.trained / "model.safetensors"
        if kind == "truncated":
            path = ctx.tmp / "w.safetensors"
            data = source.read_bytes()
            path.write_bytes(data[: len(data) // 2])
        elif kind == "pickle":
            path = ctx.tmp / "w.pt"
            path.write_bytes(pickle.dumps(_Payload(str(ctx.tmp / "pwned"))))
        elif kind == "missing":
            path = ctx.tmp / "nothing.safetensors"
        else:  # wrong shapes: every convolution given one more filter
            path = ctx.tmp / "w.safetensors"
            state = load_file(str(source))
            save_file({k: torch.cat([v, v[:1]]) if v.ndim == 4 else v for k, v in state.items()},
                      str(path))
        return _backbone(ctx, path)
    return setup


class _Payload:
    """A pickle that creates a file when unpickled: loading weights must never run it."""
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _not_pwned(ctx: Ctx) -> None:
    assert not (ctx.tmp / "pwned").exists(), "unpickling ran code"


def _damaged_run(damage: Callable[[Path], None], command: str = "predict"
                 ) -> Callable[[Ctx], list[str]]:
    def setup(ctx: Ctx) -> list[str]:
        run = ctx.run_copy()
        damage(run)
        if command in ("resume", "report", "compare"):
            return [command, str(run)]
        image = ctx.tmp / "one.png"
        Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(image)
        return ["predict", str(run), str(image), "--out", str(ctx.tmp / "out.csv")]
    return setup


def _interrupted(run: Path) -> None:
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["status"] = "interrupted"
    (run / "metrics.json").write_text(json.dumps(metrics))


def _corrupt_checkpoint(run: Path) -> None:
    _interrupted(run)
    path = run / "checkpoints" / "last.ckpt"
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(data[: len(data) // 3]))


def _predict(ctx: Ctx, source: Path, out: Path | None = None) -> list[str]:
    return ["predict", str(ctx.trained), str(source), "--out", str(out or ctx.tmp / "out.csv")]


def _out_symlink(ctx: Ctx) -> list[str]:
    victim = ctx.tmp / "precious.txt"
    victim.write_text("keep me")
    (ctx.tmp / "link.csv").symlink_to(victim)
    image = ctx.tmp / "one.png"
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(image)
    return _predict(ctx, image, ctx.tmp / "link.csv")


def _victim_intact(ctx: Ctx) -> None:
    assert (ctx.tmp / "precious.txt").read_text() == "keep me"


def _predict_folder(kind: str) -> Callable[[Ctx], list[str]]:
    def setup(ctx: Ctx) -> list[str]:
        folder = ctx.tmp / "new"
        folder.mkdir()
        Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(folder / "a.png")
        if kind == "loop":
            (folder / "loop").symlink_to(folder, target_is_directory=True)
        else:
            (folder / "huge.png").write_bytes(_png_header(50_000, 50_000))
        return _predict(ctx, folder)
    return setup


# -------------------------------------------------------------------------------- the table

def _tfrecord(kind: str) -> Callable[[Ctx], list[str]]:
    def setup(ctx: Ctx) -> list[str]:
        records = [{"image/encoded": png_bytes(8, 40 * i), "image/class/label": i % 2}
                   for i in range(4)]
        data = bytearray(write_tfrecord(ctx.tmp / "train.tfrecord", records).read_bytes())
        if kind == "truncated":
            data = data[:-7]
        else:  # one flipped bit in the last record's image bytes
            data[-30] ^= 0x01
        (ctx.tmp / "train.tfrecord").write_bytes(bytes(data))
        return ["run", ctx.write(ctx.config({"name": "tfrecord",
                                             "files": str(ctx.tmp / "*.tfrecord")}))]
    return setup


def _shard(kind: str, cache: str = "none") -> Callable[[Ctx], list[str]]:
    def setup(ctx: Ctx) -> list[str]:
        members = {}
        for i in range(6):  # a sample's members are consecutive; sample 3 lacks one
            size = 12 if kind == "sizes" and i == 5 else 8
            if not (kind == "no-label" and i == 3):
                members[f"s{i}.cls"] = str(i % 2).encode()
            members[f"s{i}.png"] = png_bytes(size, 40 * i)
        write_tar(ctx.tmp / "shard-000000.tar", members)
        files = str(ctx.tmp / ("nothing-*.tar" if kind == "empty-glob" else "shard-*.tar"))
        return ["run", ctx.write(ctx.config({"name": "webdataset", "files": files, "cache": cache,
                                             "cache_dir": str(ctx.tmp / "cache"), "workers": 0,
                                             "val_split": 0.0, "test_split": 0.0},
                                            train={"checkpoint": {"monitor": "loss"}}))]
    return setup


CASES: list[Case] = [
    # experiment files
    Case("config-missing", "config", "`cnnlab run nope.yaml` (no such file)",
         lambda c: ["run", str(c.tmp / "nope.yaml")], 2, ("does not exist",)),
    Case("config-not-yaml", "config", "unbalanced brackets in the YAML",
         lambda c: ["run", c.write("name: [x\n")], 2, ("not valid YAML",)),
    Case("config-binary", "config", "a binary file as the experiment",
         lambda c: ["run", c.write(b"\xff\xfe\x00\x81")], 2, ("UTF-8",)),
    Case("config-list", "config", "a YAML list instead of a mapping",
         lambda c: ["run", c.write("- a\n- b\n")], 2, ("must hold a mapping",)),
    Case("config-python-tag", "config", "a `!!python/object` tag (code in YAML)",
         lambda c: ["run", c.write("name: !!python/object/apply:os.mkdir ['pwned']\n")], 2,
         ("not valid YAML",), _not_pwned),
    Case("config-alias-bomb", "config", "YAML aliases expanding to 387 million items "
         "(\"billion laughs\")", _alias_bomb, 2, ("description", "unknown key")),
    Case("config-unknown-key", "config", "a misspelt key (`train.epochz`)",
         lambda c: ["run", c.write(c.config(train={"epochz": 2}))], 2,
         ("unknown key", "train.epochz", "Allowed keys")),
    Case("config-wrong-type", "config", "`train.batch_size: big`",
         lambda c: ["run", c.write(c.config(train={"batch_size": "big"}))], 2,
         ("train.batch_size", "integer")),
    Case("config-splits", "config", "`val_split + test_split >= 1`",
         lambda c: ["run", c.write(c.config({"name": "digits", "val_split": 0.5,
                                             "test_split": 0.5}))], 2, ("below 1",)),
    Case("config-unknown-source", "config", "`data.name: imagenett` (no such source)",
         lambda c: ["run", c.write(c.config({"name": "imagenett"}))], 2,
         ("Unknown dataset", "imagefolder")),
    Case("config-ignored-key", "config", "`data.root` set with `data.name: digits`",
         lambda c: ["run", c.write(c.config({"name": "digits", "root": "/nonexistent"}))], 2,
         ("`data.root` is not used by `digits`",)),
    Case("config-brightness-mode", "config", "`brightness: {factor: 0.1, mode: times}`",
         lambda c: ["run", c.write(c.config(augment=[{"brightness": {"factor": 0.1,
                                                                      "mode": "times"}}]))], 2,
         ("augment", "mode", "'add'", "'multiply'")),
    # names and where runs go
    Case("name-dotdot", "paths", "`--set name=../../x`", _name("../../x"), 2,
         ("name", "'..'"), _nothing_outside),
    Case("name-absolute", "paths", "`--set name=/tmp/x`", _name("/tmp/x"), 2,
         ("name", "absolute name"), _nothing_outside),
    Case("name-nul", "paths", "a NUL byte in `name`", _name("a\x00b"), 2, ("name", "NUL byte"),
         _nothing_outside),
    Case("name-symlink", "paths", "`runs_dir/shared` is a symlink to a folder outside runs_dir",
         _symlinked_name, 2, ("outside runs_dir", "symbolic link"),
         lambda c: _assert_empty(c.tmp / "outside")),
    Case("runs-dir-file", "paths", "`runs_dir` is an existing file",
         lambda c: ["run", c.write(c.config()), "--runs-dir", str(c.write("x", "afile"))], 2,
         ("Cannot create the run folder",)),
    # --set
    Case("set-huge-image-size", "--set", "`--set data.image_size=100000` (terabytes of pixels)",
         lambda c: ["run", c.write(c.config()), "--set", "data.image_size=100000"], 2,
         ("data.image_size 100000", "GiB", "memory available")),
    Case("set-huge-image-size-folder", "--set", "`--set data.image_size=100000` on an image "
         "folder", lambda c: c.run_folder(c.folder(per_class=4), image_size=100000), 2,
         ("GiB", "memory available")),
    Case("set-no-equals", "--set", "`--set train.lr`", lambda c: ["run", c.write(c.config()),
         "--set", "train.lr"], 2, ("must look like key.path=value",)),
    Case("set-out-of-range", "--set", "`--set train.lr=-1`", lambda c: ["run",
         c.write(c.config()), "--set", "train.lr=-1"], 2, ("train.lr", "greater than 0")),
    Case("set-not-section", "--set", "`--set train.epochs.x=1`", lambda c: ["run",
         c.write(c.config()), "--set", "train.epochs.x=1"], 2, ("not a section",)),
    Case("set-broken-yaml", "--set", "`--set train.lr=[1,`", lambda c: ["run",
         c.write(c.config()), "--set", "train.lr=[1,"], 2, ("train.lr",)),
    # data folders
    Case("data-root-missing", "data", "`data.root` names no folder",
         lambda c: c.run_folder(c.tmp / "no_such_folder"), 2, ("no_such_folder", "does not exist")),
    Case("data-empty", "data", "an empty data folder",
         _empty_folder, 2, ("holds no class folders",)),
    Case("data-one-class", "data", "one class folder", lambda c: c.run_folder(
         c.folder(classes=("lonely",))), 2, ("lonely", "at least two")),
    Case("data-empty-class", "data", "a class folder without images",
         lambda c: c.run_folder((lambda f: ((f / "ghost").mkdir(), f)[1])(c.folder())), 2,
         ("ghost", "holds no images")),
    Case("image-zero-byte", "data", "a zero-byte .png among the images", _bad_image("zero"), 2,
         ("bad_0007.png", "Cannot read the image"), _no_training),
    Case("image-corrupt", "data", "random bytes named .png", _bad_image("corrupt"), 2,
         ("bad_0007.png", "Cannot read the image"), _no_training),
    Case("image-truncated", "data", "a .png cut in half", _bad_image("truncated"), 2,
         ("bad_0007.png", "Cannot read the image"), _no_training),
    Case("image-bomb", "data", "a PNG header claiming 50,000 x 50,000 pixels", _bad_image("bomb"),
         2, ("bad_0007.png", "MAX_IMAGE_PIXELS"), _no_training),
    Case("image-sizes", "data", "images of different sizes, no `data.image_size`",
         lambda c: c.run_folder((lambda f: (Image.new("RGB", (9, 5)).save(f / "cat" / "odd.png"),
                                            f)[1])(c.folder())), 2,
         ("different sizes", "data.image_size")),
    Case("image-modes", "data", "grayscale, RGBA, palette, 16-bit PNGs and a BMP mixed "
         "(`cnnlab plan`: all are converted to the run's channels)", _mixed_modes, 0, ()),
    Case("npz-not-an-archive", "data", "`data.name: npz` on a file that is not an .npz",
         _npz("not-npz"), 2, ("data.npz", "not a readable .npz")),
    Case("npz-no-labels", "data", "an .npz without the array `y`", _npz("no-y"), 2,
         ("no array 'y'",)),
    Case("npz-pickled", "data", "an .npz of pickled objects", _npz("pickled"), 2,
         ("data.npz", "pickle")),
    Case("image-skip", "data", "a corrupt .png with `data.on_bad_image: skip` (left out, "
         "listed in data.json and the summary)", lambda c: _bad_image("corrupt")(c)[:1] + [
             c.write(c.config({"root": str(c.tmp / "images"), "on_bad_image": "skip",
                               "val_split": 0.25, "test_split": 0.0}))],
         0, (), _skipped_listed),
    Case("csv-missing-image", "data", "`data.name: csv`: a row whose image does not exist",
         _csv("missing-image"), 2, ("train.csv, line 8", "'17'", "does not exist")),
    Case("csv-unknown-label", "data", "`data.name: csv`: a label not in `data.classes`",
         _csv("unknown-label"), 2, ("train.csv, line 5", "'c'", "not in the class list")),
    Case("csv-empty", "data", "`data.name: csv`: an empty CSV", _csv("empty"), 2,
         ("train.csv", "is empty")),
    Case("csv-missing-column", "data", "`data.name: csv`: `data.label_column` names no column",
         _csv("missing-column"), 2, ("data.label_column", "no column 'class'", "id, label")),
    Case("cache-disk-unsupported", "data", "`data.cache: disk` with a source that reads no "
         "image files (`digits`)", lambda c: ["run", c.write(c.config({"name": "digits",
                                                                        "cache": "disk"}))], 2,
         ("data.cache: disk", "csv, imagefolder, tfrecord, webdataset", "digits")),
    Case("data-unknown-class", "data", "`data.classes` names a missing class",
         lambda c: c.run_folder(c.folder(), classes=["cat", "zebra"]), 2, ("zebra", "available")),
    Case("tfrecord-truncated", "data", "a TFRecord file cut short inside its last record",
         _tfrecord("truncated"), 2, ("train.tfrecord", "record 3", "truncated"), _no_training),
    Case("tfrecord-bad-crc", "data", "a TFRecord record whose bytes do not match its CRC",
         _tfrecord("crc"), 2, ("train.tfrecord", "record 3", "bad data CRC"), _no_training),
    Case("shard-no-label", "data", "a WebDataset shard sample without its `.cls` label",
         _shard("no-label"), 2, ("shard-000000.tar", "sample 's3'", "has no label"), _no_training),
    Case("shard-empty-glob", "data", "`data.files` a glob that matches no shard",
         _shard("empty-glob"), 2, ("nothing-*.tar", "matches no file")),
    Case("shard-image-sizes", "data", "streamed (`cache: none`) images of different sizes, no "
         "`data.image_size`", _shard("sizes"), 2, ("sample 's5'", "different sizes",
                                                    "data.image_size")),
    Case("shard-image-sizes-disk", "data", "WebDataset images of different sizes decoded into "
         "the disk cache (`cache: disk`), no `data.image_size`", _shard("sizes", "disk"), 2,
         ("sample 's5'", "different sizes", "data.image_size"), _no_training),
    # weights files (model.pretrained of a backbone)
    Case("weights-missing", "weights", "`model.pretrained` names no file", _weights("missing"), 2,
         ("weights file", "does not exist")),
    Case("weights-truncated", "weights", "a truncated .safetensors", _weights("truncated"), 2,
         ("cannot read", "w.safetensors")),
    Case("weights-pickle", "weights", "a pickle that runs code, named .pt", _weights("pickle"),
         2, ("cannot read", "w.pt"), _not_pwned),
    Case("weights-shapes", "weights", "tensors of other shapes than the backbone's",
         _weights("shapes"), 2, ("shapes differ",)),
    # run folders
    Case("weights-package-unknown", "weights", "`pretrained: package:efficientnet_lite9`",
         lambda c: ["run", c.write({**c.config(), "model": {
             "name": "backbone", "backbone": "timm:tf_efficientnet_lite0",
             "pretrained": "package:efficientnet_lite9"}})], 2,
         ("no weights package", "package:efficientnet_lite0")),
    Case("weights-package-other-arch", "weights", "`pretrained: package:efficientnet_lite0` "
         "with `backbone: timm:efficientnet_lite0` (other padding)",
         lambda c: ["run", c.write({**c.config(), "model": {
             "name": "backbone", "backbone": "timm:efficientnet_lite0",
             "pretrained": "package:efficientnet_lite0"}})], 2,
         ("must be timm:tf_efficientnet_lite0",)),
    Case("run-not-a-run", "run folder", "`cnnlab resume` of a folder that is not a run",
         lambda c: ["resume", str(c.tmp)], 2, ("not a cnnlab run folder",)),
    Case("run-completed", "run folder", "`cnnlab resume` of a completed run",
         lambda c: ["resume", str(c.trained)], 2, ("already completed",)),
    Case("run-no-checkpoint", "run folder", "`cnnlab resume` without checkpoints/last.ckpt",
         _damaged_run(lambda r: (_interrupted(r), shutil.rmtree(r / "checkpoints")), "resume"), 2,
         ("no checkpoints/last.ckpt",)),
    Case("run-corrupt-checkpoint", "run folder", "`cnnlab resume` with a truncated last.ckpt",
         _damaged_run(_corrupt_checkpoint, "resume"), 2, ("last.ckpt", "cannot be read")),
    Case("run-no-weights", "run folder", "`cnnlab predict` of a run without model.safetensors",
         _damaged_run(lambda r: (r / "model.safetensors").unlink()), 2,
         ("no model.safetensors",)),
    Case("run-truncated-weights", "run folder", "`cnnlab predict` with a truncated "
         "model.safetensors", _damaged_run(lambda r: (r / "model.safetensors").write_bytes(
             (r / "model.safetensors").read_bytes()[:100])), 2, ("model.safetensors",)),
    Case("run-corrupt-data-json", "run folder", "`cnnlab predict` with a corrupt data.json",
         _damaged_run(lambda r: (r / "data.json").write_text("{not json")), 2, ("data.json",)),
    Case("run-corrupt-metrics", "run folder", "`cnnlab resume` with a corrupt metrics.json",
         _damaged_run(lambda r: (r / "metrics.json").write_text("{"), "resume"), 2,
         ("metrics.json",)),
    Case("report-no-metrics", "run folder", "`cnnlab report` of a run without metrics.json",
         _damaged_run(lambda r: (r / "metrics.json").unlink(), "report"), 2, ("metrics.json",)),
    Case("report-corrupt-metrics", "run folder", "`cnnlab report` with a corrupt metrics.json",
         _damaged_run(lambda r: (r / "metrics.json").write_text("[1, 2"), "report"), 2,
         ("metrics.json",)),
    Case("compare-corrupt-metrics", "run folder", "`cnnlab compare` over a run with a corrupt "
         "metrics.json (skipped, named; nothing left to compare)",
         _damaged_run(lambda r: (r / "metrics.json").write_text("{"), "compare"), 2,
         ("metrics.json",)),
    # predict inputs and outputs
    Case("predict-out-symlink", "outputs", "`predict --out` names a symlink to another file",
         _out_symlink, 2, ("symbolic link",), _victim_intact),
    Case("compare-out-symlink", "outputs", "`compare --out` names a symlink to another file",
         lambda c: (_out_symlink(c), ["compare", str(c.trained), "--format", "csv", "--out",
                                      str(c.tmp / "link.csv")])[1], 2, ("symbolic link",),
         _victim_intact),
    Case("export-symlink", "outputs", "`export` where model.torchscript.pt is a symlink",
         lambda c: (lambda r: ((r / "model.torchscript.pt").symlink_to(c.tmp / "precious.txt"),
                               (c.tmp / "precious.txt").write_text("keep me"),
                               ["export", str(r), "--format", "torchscript"])[2])(c.run_copy()),
         2, ("symbolic link",), _victim_intact),
    Case("predict-out-folder", "outputs", "`predict --out` names a folder",
         lambda c: _predict(c, c.tmp, c.tmp), 2, ("is a folder",)),
    Case("predict-input-missing", "outputs", "`predict` of a missing input",
         lambda c: _predict(c, c.tmp / "nothing"), 2, ("does not exist",)),
    Case("predict-symlink-loop", "outputs", "`predict` of a folder holding a symlink loop",
         _predict_folder("loop"), 0, ()),
    Case("run-predict-output-path", "outputs", "`predict.output: ../submission.csv` in an "
         "experiment (outside the run folder)", lambda c: ["run", c.write(c.config(
             predict={"source": str(c.tmp), "output": "../submission.csv"}))], 2,
         ("predict.output", "plain file name"), _nothing_outside),
    Case("run-predict-source-missing", "outputs", "`predict.source` names no folder (refused "
         "before training)", lambda c: ["run", c.write(c.config(
             predict={"source": str(c.tmp / "no_test_folder")}))], 2,
         ("no_test_folder", "does not exist"), _no_training),
    Case("predict-bomb", "outputs", "`predict` of a folder with a 50,000 x 50,000 PNG header",
         _predict_folder("bomb"), 2, ("huge.png", "MAX_IMAGE_PIXELS")),
    # CLI misuse
    Case("cli-no-command", "cli", "`cnnlab trian`", lambda c: ["trian"], 2, ("No such command",)),
    Case("cli-missing-argument", "cli", "`cnnlab run` without a file", lambda c: ["run"], 2,
         ("Missing argument",)),
    Case("cli-seeds-zero", "cli", "`cnnlab run exp.yaml --seeds 0`",
         lambda c: ["run", c.write(c.config()), "--seeds", "0"], 2, ("--seeds",)),
    Case("cli-compare-format", "cli", "`cnnlab compare --format xls`",
         lambda c: ["compare", "--format", "xls"], 2, ("--format", "xls")),
    Case("cli-compare-nothing", "cli", "`cnnlab compare` without a runs folder",
         lambda c: ["compare", "--runs-dir", str(c.tmp / "none")], 2, ("does not exist",)),
    Case("cli-evaluate-no-root", "cli", "`cnnlab evaluate RUN` without --data-root",
         lambda c: ["evaluate", str(c.trained)], 2, ("--data-root",)),
    Case("cli-export-format", "cli", "`cnnlab export RUN --format tflite`",
         lambda c: ["export", str(c.trained), "--format", "tflite"], 2, ("tflite",)),
    Case("cli-report-two", "cli", "`cnnlab report A B` (two runs)",
         lambda c: ["report", str(c.trained), str(c.trained)], 2, ("one run folder",)),
]

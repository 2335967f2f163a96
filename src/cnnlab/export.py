"""Exporting a run's weights for deployment, checked against PyTorch before it is trusted.

``export_run(run_dir, "onnx" | "torchscript")`` writes ``model.onnx`` or
``model.torchscript.pt`` into the run folder. The exported graph takes what the Classifier
takes, raw pixels: ``pixels`` float32 (B, C, H, W) on the 0-255 scale (the training scaling is
inside), and returns ``probabilities`` (B, K) after softmax, batch size free.

The check: a seeded batch of random pixel images goes through the PyTorch classifier and
through the exported file (ONNX Runtime's CPU provider for ONNX, ``torch.jit.load`` for
TorchScript); the largest absolute difference of any probability must stay below the
tolerance (default 1e-4). The result is printed by the CLI and recorded in the run folder's
``export.json`` under the format's name.

ONNX uses PyTorch's TorchScript-based exporter (``dynamo=False``): the newer exporter needs
``onnxscript``, which is not among cnnlab's dependencies.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.store import read_json, safe_output_path, write_json
from cnnlab.store.artifact import SavedRun, load_run

FORMATS = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt"}
DEFAULT_TOLERANCE = 1e-4
ONNX_OPSET = 17


class ExportError(CnnlabError):
    """The export cannot be made (unknown format, missing package)."""


@dataclass
class ExportResult:
    format: str
    path: str
    max_abs_diff: float
    tolerance: float
    passed: bool
    check_inputs: str
    input: dict
    output: dict
    classes: list[str]
    seconds: float
    bytes: int


class Probabilities(nn.Module):
    """The classifier plus softmax: pixels (B, C, H, W) 0-255 -> probabilities (B, K)."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.classifier(pixels).softmax(dim=1)


def export_run(run_dir: Path, fmt: str, *, batch: int = 16, tolerance: float = DEFAULT_TOLERANCE,
               seed: int = 0) -> ExportResult:
    if fmt not in FORMATS:
        raise ExportError(f"Unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}.")
    saved = load_run(run_dir)
    wrapper = Probabilities(saved.classifier).eval()
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (batch, *saved.in_shape), generator=generator).float()
    with torch.inference_mode():
        expected = wrapper(pixels)
    target = safe_output_path(Path(saved.run_dir) / FORMATS[fmt], "the export file")
    started = time.perf_counter()
    if fmt == "onnx":
        got = _export_onnx(wrapper, pixels, target, saved)
    else:
        got = _export_torchscript(wrapper, pixels, target, saved)
    seconds = time.perf_counter() - started
    diff = float((torch.as_tensor(got, dtype=torch.float32) - expected).abs().max())
    result = ExportResult(
        format=fmt, path=str(target), max_abs_diff=diff, tolerance=tolerance,
        passed=bool(diff < tolerance),
        check_inputs=f"{batch} random uint8-range images (seed {seed}), max abs difference of "
                     "softmax probabilities against PyTorch",
        input={"name": "pixels", "dtype": "float32", "shape": ["batch", *saved.in_shape],
               "range": "0-255 (normalisation is inside the model)"},
        output={"name": "probabilities", "dtype": "float32", "shape": ["batch", len(saved.classes)]},
        classes=list(saved.classes), seconds=round(seconds, 3), bytes=target.stat().st_size)
    record_path = Path(saved.run_dir) / "export.json"
    record = read_json(record_path) if record_path.is_file() else {}
    record[fmt] = asdict(result)
    write_json(record_path, record)
    return result


def _metadata(saved: SavedRun) -> dict[str, str]:
    return {"cnnlab.name": saved.cfg.name, "cnnlab.classes": json.dumps(saved.classes),
            "cnnlab.in_shape": json.dumps(list(saved.in_shape)),
            "cnnlab.input": "pixels float32 (B, C, H, W), 0-255", "cnnlab.output": "probabilities"}


def _temp_beside(target: Path) -> Path:
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    return Path(name)


def _export_onnx(wrapper: nn.Module, pixels: torch.Tensor, target: Path, saved: SavedRun):
    tmp = _temp_beside(target)
    try:
        save_onnx(wrapper, pixels, tmp, _metadata(saved))
        (got,) = onnx_session(tmp).run(["probabilities"], {"pixels": pixels.numpy()})
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return got


def save_onnx(wrapper: nn.Module, pixels: torch.Tensor, path: Path,
              metadata: dict[str, str]) -> None:
    """Write ``wrapper`` (pixels -> probabilities, batch size free) as a checked ONNX file."""
    onnx = _require("onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, (pixels,), str(path), dynamo=False, opset_version=ONNX_OPSET,
                          input_names=["pixels"], output_names=["probabilities"],
                          dynamic_axes={"pixels": {0: "batch"}, "probabilities": {0: "batch"}})
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))


def onnx_session(path: Path):
    """An ONNX Runtime CPU session using as many threads as PyTorch does."""
    ort = _require("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ExportError(f"ONNX export needs the onnx and onnxruntime packages ({module} is "
                          "missing): pip install onnx onnxruntime.") from None


def _export_torchscript(wrapper: nn.Module, pixels: torch.Tensor, target: Path, saved: SavedRun):
    tmp = _temp_beside(target)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(wrapper, (pixels,), check_trace=False)
            torch.jit.save(traced, str(tmp), _extra_files={"cnnlab.json": json.dumps(_metadata(saved))})
            loaded = torch.jit.load(str(tmp), map_location="cpu")
        with torch.inference_mode():
            got = loaded(pixels)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return got

"""The ``backbone`` model: a timm, torchvision or cnnlab network as a feature extractor, a head
built from the sequential vocabulary, and freezing "by layers" as the reports describe it.

Structure of the built module (:class:`BackboneNet`), which is also what the summary shows::

    resizing   (Resizing)                      only with model.input_size
    backbone   (timm:mobilenetv2_100, frozen)  FeatureExtractor: the library model's feature maps
    global_average_pooling2d, dense, ...       model.head, built by the sequential builder
    dense_N    (Dense)                         Dense(num_classes), logits

* **Feature maps.** timm models give ``forward_features`` (created with ``num_classes=0``);
  torchvision models their ``.features`` (densenet: plus its final ReLU) or, without one,
  their children up to the global pool (ResNets); a cnnlab run's sequential model is cut
  before its first layer with a 2D output (``flatten``, ``global_avg_pool``, ``dense``).
  Modules the feature maps do not depend on (timm VGG's 4096-wide ``pre_logits``, ConvNeXt's
  head norm) are found by one backward pass at build time and removed.
* **Layers.** A layer is a module holding parameters of its own; ``layer_names`` lists them in
  the order the forward pass first calls them (found with forward hooks at build time), under
  the library's own module names. ``unfreeze: {last: N}`` / ``{range: [a, b]}`` slice that
  list, ``{stages: [...]}`` selects by name prefix.
* **BatchNorm.** With ``bn: frozen`` (default) a BatchNorm whose parameters are frozen is put
  back in eval mode whenever the net is put in train mode, so its running statistics stay
  those of the pretrained weights (Keras's behaviour for ``trainable = False``).
* **Input scaling.** ``input_normalization`` is (mean, std) on the 0-255 scale that the
  pipeline hands to the :class:`~cnnlab.train.Classifier` instead of the data's, when the
  pretrained weights expect their own (timm ``pretrained_cfg``, torchvision weights'
  ``transforms()``, or the mean/std stored in a cnnlab ``model.safetensors``). Grayscale
  inputs are repeated to 3 channels inside ``forward`` (and a 3-channel mean broadcasts a
  1-channel image to 3 channels in the Classifier), so ``data.channels: 1`` works too.
* **Weights.** ``pretrained: true`` uses the library's cache (Hugging Face hub cache for timm,
  ``<torch hub>/checkpoints`` for torchvision and timm's URL weights) and downloads only when
  the host answers within a few seconds; offline it fails at once with a ConfigError naming
  the file and the folder it belongs in. ``pretrained: <file>`` loads a .safetensors or torch
  state dict (``weights_only=True``) whose keys are the library model's, under any prefix.
"""

from __future__ import annotations

import contextlib
import contextvars
import difflib
import os
import socket
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.config.backbone import BackboneModelConfig, LayerSelection
from cnnlab.config.schema import SequentialModelConfig
from cnnlab.errors import ConfigError
from cnnlab.models.factory import MODELS, InShape
from cnnlab.models.layers import pair
from cnnlab.models.sequential import build_sequential
from cnnlab.models.summary import keras_shape, keras_shape_tuple

#: Input sizes tried, smallest first, to tell the user the smallest one a backbone accepts.
_PROBE_SIZES = (16, 24, 32, 48, 64, 96, 128, 160, 224, 299, 331)
#: Seconds to wait for a weights host before calling the machine offline.
CONNECT_TIMEOUT_S = 3.0
_LOAD_WEIGHTS: contextvars.ContextVar[bool] = contextvars.ContextVar("cnnlab_load_weights",
                                                                     default=True)


@contextlib.contextmanager
def skip_pretrained_weights():
    """Build backbones without finding or loading their pretrained weights (but with the same
    freezing and input scaling), for code that loads a saved run's weights right after::

        with skip_pretrained_weights():
            net = build_model(cfg.model, in_shape, num_classes)
        classifier.load_state_dict(load_file("run/model.safetensors"))
    """
    token = _LOAD_WEIGHTS.set(False)
    try:
        yield
    finally:
        _LOAD_WEIGHTS.reset(token)


# ------------------------------------------------------------------------------ weights

@dataclass
class Weights:
    """Where a backbone's weights come from and what they expect of the input."""

    origin: str  # what the run records, e.g. "timm/mobilenetv2_100.ra_in1k (Hugging Face hub)"
    path: Path | None = None  # the local file, once resolved
    mean: tuple[float, ...] | None = None  # 0-1 scale, from the library's metadata
    std: tuple[float, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _reachable(host: str, port: int = 443, timeout: float = CONNECT_TIMEOUT_S) -> bool:
    """Whether a TCP connection to ``host`` (or the HTTPS proxy) opens within ``timeout``.

    Name resolution has no timeout of its own, so the attempt runs in a daemon thread that
    is abandoned when the time is up.
    """
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    if proxy:
        parsed = urlparse(proxy if "://" in proxy else f"http://{proxy}")
        host, port = parsed.hostname or host, parsed.port or 80
    result: list[bool] = []

    def attempt() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except Exception:  # noqa: BLE001  any failure means: no network
            result.append(False)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(result and result[0])


def _offline(host: str, *, hf: bool = False) -> bool:
    if _env_true("CNNLAB_OFFLINE") or (hf and _env_true("HF_HUB_OFFLINE")):
        return True
    return not _reachable(host)


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment at call time."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface")
    return Path(home).expanduser() / "hub"


def torch_checkpoints_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def _offline_error(spec: str, missing: str, fetch_and_place: str, filename: str) -> ConfigError:
    return ConfigError(
        f"model.pretrained: the weights of {spec} are not on this machine and there is no "
        f"network to download them: {missing}. On a machine with network, {fetch_and_place}; "
        f"or put the file anywhere and set model.pretrained: /path/to/{filename}; or set "
        "model.pretrained: false to train from a random initialisation.")


def _timm_weights(arch: str, spec: str, *, fetch: bool) -> Weights:
    import timm.models

    cfg = timm.models.get_pretrained_cfg(arch)
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        raise ConfigError(f"model.pretrained: timm has no pretrained weights for {arch}; set "
                          "model.pretrained: false or name another model.")
    mean, std = tuple(cfg.mean), tuple(cfg.std)
    if cfg.hf_hub_id:
        from huggingface_hub import hf_hub_download, try_to_load_from_cache

        repo, _, revision = cfg.hf_hub_id.partition("@")
        filenames = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors",
                                                                        "pytorch_model.bin"]
        cache = hf_cache_dir()
        origin = f"{repo} (Hugging Face hub)"
        for filename in filenames:
            found = try_to_load_from_cache(repo, filename, cache_dir=cache,
                                           revision=revision or None)
            if isinstance(found, str):
                return Weights(origin, Path(found), mean, std, {"hf_repo": repo})
        if not fetch:
            return Weights(origin, None, mean, std, {"hf_repo": repo})
        if _offline("huggingface.co", hf=True):
            folder = f"models--{repo.replace('/', '--')}"
            raise _offline_error(
                spec, f"{repo} ({filenames[0]}) is not in the Hugging Face cache {cache}",
                f"run `hf download {repo} {filenames[0]}` (or timm.create_model('{arch}', "
                f"pretrained=True)) and copy the cache folder {folder} into {cache} here",
                filenames[0])
        last_error: Exception | None = None
        for filename in filenames:
            try:
                path = hf_hub_download(repo, filename, cache_dir=cache, revision=revision or None,
                                       etag_timeout=CONNECT_TIMEOUT_S)
                return Weights(origin, Path(path), mean, std, {"hf_repo": repo})
            except Exception as exc:  # EntryNotFound, network errors: try the next name
                last_error = exc
        raise ConfigError(f"model.pretrained: downloading {repo} from the Hugging Face hub "
                          f"failed ({type(last_error).__name__}: {last_error}).")
    return _url_weights(cfg.url, spec, mean, std, fetch=fetch,
                        how=f"timm.create_model('{arch}', pretrained=True)")


def _url_weights(url: str, spec: str, mean, std, *, fetch: bool, how: str) -> Weights:
    filename = os.path.basename(urlparse(url).path)
    target = torch_checkpoints_dir() / filename
    if target.is_file():
        return Weights(url, target, mean, std)
    if not fetch:
        return Weights(url, None, mean, std)
    if _offline(urlparse(url).hostname or "download.pytorch.org"):
        raise _offline_error(spec, f"{filename} is not in {target.parent}",
                             f"download {url} ({how} saves it in <torch hub>/checkpoints) and "
                             f"copy it to {target} here", filename)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(target), progress=False)
    except Exception as exc:
        raise ConfigError(f"model.pretrained: downloading {url} failed "
                          f"({type(exc).__name__}: {exc}).") from None
    return Weights(url, target, mean, std)


def _torchvision_weights(arch: str, spec: str, *, fetch: bool) -> Weights:
    import torchvision

    try:
        enum = torchvision.models.get_model_weights(arch)
    except (ValueError, KeyError):
        raise ConfigError(f"model.pretrained: torchvision has no pretrained weights for {arch}; "
                          "set model.pretrained: false.") from None
    weights = enum.DEFAULT
    transforms = weights.transforms()
    found = _url_weights(weights.url, spec, tuple(transforms.mean), tuple(transforms.std),
                         fetch=fetch, how=f"torchvision.models.get_model('{arch}', "
                                          f"weights='DEFAULT')")
    found.extra["torchvision_weights"] = str(weights)
    return found


def resolve_weights(cfg: BackboneModelConfig, *, fetch: bool = True) -> Weights | None:
    """The weights ``cfg.pretrained`` names, found (or downloaded) now; None for random init.

    Raises a ConfigError at once, without waiting on network timeouts, when they are neither
    cached nor downloadable.
    """
    if cfg.pretrained is False:
        return None
    if isinstance(cfg.pretrained, str):
        path = Path(cfg.pretrained).expanduser()
        if not path.is_file() and fetch:
            raise ConfigError(f"model.pretrained: the weights file {path} does not exist.")
        library = None
        if cfg.source != "cnnlab":
            library = (_timm_weights if cfg.source == "timm" else _torchvision_weights)(
                cfg.arch, cfg.backbone, fetch=False) if _has_library_weights(cfg) else None
        return Weights(str(path), path, library.mean if library else None,
                       library.std if library else None)
    if cfg.source == "timm":
        return _timm_weights(cfg.arch, cfg.backbone, fetch=fetch)
    if cfg.source == "torchvision":
        return _torchvision_weights(cfg.arch, cfg.backbone, fetch=fetch)
    run_dir = Path(cfg.arch).expanduser()
    path = run_dir / "model.safetensors"
    if not path.is_file() and fetch:
        raise ConfigError(
            f"model.pretrained: true with backbone {cfg.backbone} needs {path} (the weights a "
            "completed cnnlab run saves); point model.backbone at a run folder, or set "
            "model.pretrained to a weights file or false.")
    return Weights(str(path), path)


def _has_library_weights(cfg: BackboneModelConfig) -> bool:
    try:
        if cfg.source == "timm":
            import timm.models

            pc = timm.models.get_pretrained_cfg(cfg.arch)
            return pc is not None and bool(pc.hf_hub_id or pc.url)
        import torchvision

        torchvision.models.get_model_weights(cfg.arch)
        return True
    except Exception:
        return False


def preflight(model_cfg: Any) -> None:
    """Fail before any data is loaded when a backbone's weights cannot be had."""
    if isinstance(model_cfg, BackboneModelConfig) and model_cfg.loads_weights:
        _check_arch(model_cfg)
        resolve_weights(model_cfg, fetch=True)


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors, or from a torch file with ``weights_only=True``."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"model.pretrained: cannot read {path} as a state dict "
                          f"({type(exc).__name__}: {str(exc).splitlines()[0]}).") from None
    for key in ("state_dict", "model", "model_state_dict"):  # common checkpoint wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"model.pretrained: {path} does not hold a state dict (name -> tensor).")
    return state


def load_matching(module: nn.Module, state: dict[str, torch.Tensor], what: str) -> dict[str, Any]:
    """Load ``state`` into ``module``, whatever common prefix the file's keys carry.

    The prefix that matches most of the module's keys is used (``""``, ``net.backbone.model.``,
    ``module.``, ...); keys the module lacks (a classifier, a head) are ignored, every tensor
    the module has must be found with the right shape.
    """
    target = module.state_dict()
    prefixes: dict[str, int] = {}
    by_tail: dict[str, list[str]] = {}
    for key in state:
        by_tail.setdefault(".".join(key.split(".")[-2:]), []).append(key)
    for name in target:
        for key in by_tail.get(".".join(name.split(".")[-2:]), []):
            if key.endswith(name) and (len(key) == len(name) or key[-len(name) - 1] == "."):
                prefix = key[: len(key) - len(name)]
                prefixes[prefix] = prefixes.get(prefix, 0) + 1
    prefix = max(prefixes, key=lambda p: (prefixes[p], -len(p))) if prefixes else ""
    picked = {k[len(prefix):]: v for k, v in state.items()
              if k.startswith(prefix) and k[len(prefix):] in target}
    missing = [k for k in target if k not in picked and not k.endswith("num_batches_tracked")]
    if missing:
        sample = ", ".join(list(state)[:4])
        raise ConfigError(
            f"{what}: {len(missing)} of the backbone's {len(target)} tensors are not in the file "
            f"(e.g. {', '.join(missing[:3])}); the file's keys look like {sample}. It must be a "
            "state dict of the same architecture.")
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(target[k].shape)}" for k, v in picked.items()
             if v.shape != target[k].shape]
    if wrong:
        raise ConfigError(f"{what}: tensor shapes differ from the backbone's: {'; '.join(wrong[:3])}.")
    module.load_state_dict(picked, strict=False)
    return {"prefix": prefix, "loaded": len(picked), "ignored": len(state) - len(picked)}


# --------------------------------------------------------------------------- extractors

class Resizing(nn.Module):
    """Keras ``Resizing`` (bilinear): resize inside the model, on the training device."""

    keras_type = "Resizing"

    def __init__(self, size: tuple[int, int]) -> None:
        super().__init__()
        self.size = tuple(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) == self.size:
            return x
        return F.interpolate(x, size=self.size, mode="bilinear", align_corners=False,
                             antialias=True)

    def extra_repr(self) -> str:
        return f"size={self.size}"


class FeatureExtractor(nn.Module):
    """Holds the library model as ``model`` (so names match its own) and returns feature maps."""

    def __init__(self, model: nn.Module, *, spec: str, forward_features: bool) -> None:
        super().__init__()
        self.model = model
        self.keras_type = spec  # the summary's type column
        self.forward_features = forward_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.forward_features:
            return self.model.forward_features(x)
        return self.model(x)


def _close(name: str, choices: list[str]) -> str:
    near = difflib.get_close_matches(name, choices, n=5, cutoff=0.5)
    return f" Close names: {', '.join(near)}." if near else ""


def _check_arch(cfg: BackboneModelConfig) -> None:
    if cfg.source == "timm":
        import timm

        if not timm.is_model(cfg.arch):
            raise ConfigError(f"model.backbone: timm has no model {cfg.arch!r} (see "
                              f"timm.list_models()).{_close(cfg.arch, timm.list_models())}")
    elif cfg.source == "torchvision":
        import torchvision

        names = torchvision.models.list_models(module=torchvision.models)
        if cfg.arch not in names:
            raise ConfigError(f"model.backbone: torchvision has no classification model "
                              f"{cfg.arch!r}.{_close(cfg.arch, names)}")


def _timm_model(cfg: BackboneModelConfig, weights: Weights | None) -> nn.Module:
    import timm

    if weights is None or weights.path is None or isinstance(cfg.pretrained, str):
        return timm.create_model(cfg.arch, pretrained=False, num_classes=0)
    state = load_tensors(weights.path)
    # timm applies the model's own checkpoint filter and drops the classifier's weights.
    return timm.create_model(cfg.arch, pretrained=True, num_classes=0,
                             pretrained_cfg_overlay={"state_dict": state})


def _torchvision_features(model: nn.Module, arch: str) -> nn.Sequential:
    """The part of a torchvision classifier that produces feature maps, under its own names."""
    features = getattr(model, "features", None)
    if isinstance(features, nn.Module):
        parts: OrderedDict[str, nn.Module] = OrderedDict(features=features)
        if arch.startswith("densenet"):
            parts["relu"] = nn.ReLU()  # DenseNet.forward applies it after .features
        return nn.Sequential(parts)
    parts = OrderedDict()
    for name, child in model.named_children():
        if isinstance(child, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Linear, nn.Flatten)):
            break
        parts[name] = child
    if not parts:
        raise ConfigError(f"model.backbone: cannot find the feature layers of torchvision's "
                          f"{arch} (no .features and no layers before its pooling).")
    return nn.Sequential(parts)


def _torchvision_model(cfg: BackboneModelConfig, weights: Weights | None) -> nn.Module:
    import torchvision

    if weights is not None and weights.path is not None and not isinstance(cfg.pretrained, str):
        # The file is in <torch hub>/checkpoints now, where torchvision looks before downloading.
        full = torchvision.models.get_model(cfg.arch, weights="DEFAULT")
    else:
        full = torchvision.models.get_model(cfg.arch, weights=None)
    return _torchvision_features(full, cfg.arch)


def _cnnlab_model(cfg: BackboneModelConfig, in_shape: InShape) -> tuple[nn.Module, dict]:
    """The feature layers of a cnnlab experiment's sequential model (a run folder or a YAML)."""
    from cnnlab.config.load import read_yaml, validate_config
    from cnnlab.models.factory import build_model

    path = Path(cfg.arch).expanduser()
    config_path = path / "config.yaml" if path.is_dir() else path
    if not config_path.is_file():
        raise ConfigError(f"model.backbone: {cfg.backbone} names neither a run folder (with "
                          "config.yaml) nor an experiment YAML file.")
    experiment = validate_config(read_yaml(config_path), source=str(config_path))
    info: dict[str, Any] = {"experiment": experiment.name}
    channels = experiment.data.channels or 3
    num_classes = 2
    data_json = config_path.parent / "data.json"
    if path.is_dir() and data_json.is_file():
        import json

        described = json.loads(data_json.read_text(encoding="utf-8"))
        channels = int(described["in_shape"][0])
        num_classes = len(described["classes"])
        info.update(mean=described.get("mean"), std=described.get("std"))
    full = build_model(experiment.model, (channels, in_shape[1], in_shape[2]), num_classes)
    if not isinstance(full, nn.Sequential):
        raise ConfigError(f"model.backbone: {cfg.backbone} is a {experiment.model.name} model; "
                          "only sequential models can serve as a cnnlab backbone.")
    kept: OrderedDict[str, nn.Module] = OrderedDict()
    x = torch.zeros(1, channels, in_shape[1], in_shape[2])
    full.eval()
    with torch.no_grad():
        for name, child in full.named_children():
            x = child(x)
            if x.dim() != 4:
                break
            kept[name] = child
    if not kept:
        raise ConfigError(f"model.backbone: {cfg.backbone} has no convolutional part (its "
                          "first layer already gives a 2D output).")
    info["channels"] = channels
    return nn.Sequential(kept), info


# ------------------------------------------------------------------------- layer tracing

def _direct_params(module: nn.Module) -> list[nn.Parameter]:
    return list(module.parameters(recurse=False))


def _trace(extractor: FeatureExtractor, in_shape: InShape) -> tuple[tuple[int, ...], list[str]]:
    """Feature shape and the layers in first-call order; removes modules the output ignores."""
    model = extractor.model
    called: list[str] = []
    handles = []
    for name, module in model.named_modules():
        if _direct_params(module):
            handles.append(module.register_forward_hook(
                lambda _m, _a, _o, name=name: called.append(name)))
    modes = {m: m.training for m in extractor.modules()}
    extractor.eval()
    try:
        out = extractor(torch.randn(1, *in_shape, generator=torch.Generator().manual_seed(0)))
        if not isinstance(out, torch.Tensor) or out.dim() != 4:
            raise ConfigError(f"model.backbone: {extractor.keras_type} does not produce feature "
                              f"maps (got {type(out).__name__} "
                              f"{tuple(out.shape) if isinstance(out, torch.Tensor) else ''}).")
        params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        grads = (torch.autograd.grad(out.float().sum(), [p for _, p in params], allow_unused=True)
                 if params and out.requires_grad else [])
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training
    if len(grads) == len(params) and params:
        _prune_unused(model, {name for (name, _), grad in zip(params, grads) if grad is not None})
    present = {name for name, module in model.named_modules() if _direct_params(module)}
    order = list(dict.fromkeys(n for n in called if n in present))
    # Modules whose parameters are used without being called (rare): first, in registration order.
    others = [n for n, m in model.named_modules() if n in present and n not in order]
    return tuple(out.shape[1:]), others + order


def _prune_unused(model: nn.Module, used: set[str]) -> None:
    """Replace the largest submodules none of whose parameters reach the output by Identity."""
    pruned: list[str] = []
    for name, module in list(model.named_modules()):
        if not name or any(name.startswith(p + ".") for p in pruned):
            continue
        names = [f"{name}.{n}" for n, _ in module.named_parameters()]
        if names and not any(n in used for n in names):
            parent_name, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, attr, nn.Identity())
            pruned.append(name)


def _too_small_error(extractor: FeatureExtractor, in_shape: InShape, exc: Exception) -> ConfigError:
    smallest = None
    for size in _PROBE_SIZES:
        try:
            with torch.no_grad():
                extractor.eval()
                out = extractor(torch.zeros(1, in_shape[0], size, size))
            if out.numel() > 0:
                smallest = size
                break
        except Exception:
            continue
    extractor.train()
    hint = (f" The smallest square input it takes is {smallest}x{smallest} px: set data.image_size "
            f"or model.input_size to at least {smallest}." if smallest else "")
    return ConfigError(f"model.backbone: {extractor.keras_type} cannot take "
                       f"{in_shape[1]}x{in_shape[2]} px inputs ({str(exc).splitlines()[0]}).{hint}")


def _select(layers: list[str], selection: LayerSelection | str, where: str) -> list[str]:
    if selection == "all":
        return list(layers)
    assert isinstance(selection, LayerSelection)
    if selection.last is not None:
        return layers[len(layers) - selection.last:] if selection.last else []
    if selection.range is not None:
        start, stop = selection.range
        return layers[start:stop]
    chosen = []
    for prefix in selection.stages or []:
        hits = [n for n in layers if n == prefix or n.startswith(prefix + ".")]
        if not hits:
            tops = list(dict.fromkeys(n.split(".")[0] for n in layers))
            raise ConfigError(f"{where}.stages: no backbone layer is named {prefix!r} or starts "
                              f"with {prefix + '.'!r}; top-level names: {', '.join(tops)}.")
        chosen += hits
    return [n for n in layers if n in set(chosen)]


def _matcher_texts(matcher: Any) -> Any:
    """For a timm dict ``group_matcher``: name -> the text its stage regex matched (or None)."""
    import re

    if not isinstance(matcher, dict):
        return lambda name: None
    patterns = []
    for spec in matcher.values():
        if spec is None:
            continue
        for entry in (spec if isinstance(spec, (list, tuple)) else [(spec, None)]):
            patterns.append(re.compile(entry[0]))

    def text(name: str) -> str | None:
        for pattern in patterns:
            found = pattern.match(name)
            if found:
                return found.group(0).rstrip(".") or None
        return None
    return text


def _stages(model: nn.Module, layers: list[str], source: str) -> list[tuple[str, list[str]]]:
    """Coarse layer groups in forward order: timm's ``group_matcher(coarse=True)`` where the
    model has one, else top-level modules (``features``/``blocks``/``stages`` split one level).

    A stage is named by what its members share (``layer4``, ``stages.2``, ``blocks.6``),
    joined with ``+`` where a group spans several modules (``conv_stem+bn1``).
    """
    groups: dict[Any, list[str]] = {}
    matcher = None
    if source == "timm" and hasattr(model, "group_matcher"):
        try:
            matcher = model.group_matcher(coarse=True)
        except Exception:
            matcher = None
    if matcher is not None:
        from timm.models._manipulate import group_with_matcher

        groups = dict(group_with_matcher(((n, n) for n in layers), matcher, return_values=True))
    else:
        for name in layers:
            parts = name.split(".")
            split = parts[0] in ("features", "blocks", "stages") and len(parts) >= 2
            groups.setdefault(".".join(parts[:2]) if split else parts[0], []).append(name)
    text = _matcher_texts(matcher)
    position = {n: i for i, n in enumerate(layers)}
    stages = []
    for key, members in groups.items():
        members = sorted(members, key=position.__getitem__)
        if matcher is not None:
            key = "+".join(dict.fromkeys(text(m) or m.split(".")[0] for m in members))
        stages.append((key, members))
    stages.sort(key=lambda s: position[s[1][0]])
    return stages


# ------------------------------------------------------------------------------- the net

@dataclass
class FinetunePlan:
    frozen_epochs: int
    layers: list[str]  # unfrozen at the start of epoch frozen_epochs + 1
    backbone_lr: float | None
    lr_decay: float
    applied_at_epoch: int | None = None  # 1-based epoch at which they were unfrozen


class BackboneNet(nn.Module):
    """Optional resizing, the feature extractor, then the head layers as direct children."""

    def __init__(self, *, resizing: nn.Module | None, backbone: FeatureExtractor,
                 head: OrderedDict[str, nn.Module], in_channels: int, bn: str) -> None:
        super().__init__()
        if resizing is not None:
            self.resizing = resizing
        self.backbone = backbone
        for name, module in head.items():
            self.add_module(name, module)
        self.in_channels = in_channels
        self.bn_frozen = bn == "frozen"
        # Filled in by the builder:
        self.spec = backbone.keras_type
        self.layer_names: list[str] = []
        self.stages: list[tuple[str, list[str]]] = []
        self.input_normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None
        self.info: dict[str, Any] = {}
        self.finetune: FinetunePlan | None = None
        self.initial_trainable: list[str] = []
        self.initial_counts: dict[str, int] = {}

    # -- forward and modes ------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.in_channels:
            if x.shape[1] != 1:
                raise ValueError(f"{self.spec} takes {self.in_channels}-channel images, got "
                                 f"{x.shape[1]} channels")
            x = x.expand(-1, self.in_channels, -1, -1)  # grayscale -> RGB
        for module in self.children():
            x = module(x)
        return x

    def train(self, mode: bool = True) -> BackboneNet:
        super().train(mode)
        if mode and self.bn_frozen:
            for module in self.backbone.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    params = _direct_params(module)
                    if params and not any(p.requires_grad for p in params):
                        module.eval()
        return self

    # -- layers and freezing ----------------------------------------------------------
    def layer(self, name: str) -> nn.Module:
        return self.backbone.model.get_submodule(name)

    def set_trainable(self, names: list[str], trainable: bool = True) -> None:
        for name in names:
            for p in _direct_params(self.layer(name)):
                p.requires_grad_(trainable)
        if self.training:
            self.train()  # BatchNorm modes follow

    def trainable_layers(self) -> list[str]:
        return [n for n in self.layer_names
                if any(p.requires_grad for p in _direct_params(self.layer(n)))]

    def start_finetune(self, epoch: int) -> list[str]:
        """Unfreeze the plan's layers at (0-based) ``epoch`` (``frozen_epochs``, or later when
        a resumed run starts after it); returns the names that were frozen until now."""
        plan = self.finetune
        assert plan is not None
        before = set(self.trainable_layers())
        self.set_trainable(plan.layers, True)
        # The schedule's epoch, also when a resumed run starts later than it.
        plan.applied_at_epoch = plan.frozen_epochs + 1
        return [n for n in plan.layers if n not in before]

    def lr_groups(self, base_lr: float) -> list[dict] | None:
        """Optimizer param groups: the head at ``base_lr``, one group per backbone stage at the
        finetune LR (decayed towards the input). None without a finetune section."""
        plan = self.finetune
        if plan is None:
            return None
        backbone_ids = {id(p) for p in self.backbone.parameters()}
        head = [p for p in self.parameters() if id(p) not in backbone_ids]
        groups = [{"params": head, "lr": base_lr, "name": "head"}]
        top_lr = plan.backbone_lr if plan.backbone_lr is not None else base_lr
        for depth, (stage, members) in enumerate(reversed(self.stages)):
            params = [p for n in members for p in _direct_params(self.layer(n))]
            if params:
                groups.append({"params": params, "lr": top_lr * plan.lr_decay ** depth,
                               "name": f"backbone:{stage}"})
        return groups

    # -- what the run records -----------------------------------------------------------
    def param_counts(self) -> dict[str, int]:
        backbone = list(self.backbone.parameters())
        backbone_ids = {id(p) for p in backbone}
        return {
            "frozen": sum(p.numel() for p in self.parameters() if not p.requires_grad),
            "backbone": sum(p.numel() for p in backbone),
            "backbone_trainable": sum(p.numel() for p in backbone if p.requires_grad),
            "head": sum(p.numel() for p in self.parameters() if id(p) not in backbone_ids),
        }

    def transfer_record(self) -> dict[str, Any]:
        """metrics.json entries: parameter counts, trainable layers, weights, finetune epoch."""
        record: dict[str, Any] = {
            "params": self.initial_counts,
            "backbone": {"name": self.spec, "layers": len(self.layer_names),
                         "trainable_layers": len(self.initial_trainable), **self.info},
            "trainable_layers": list(self.initial_trainable),
        }
        plan = self.finetune
        if plan is not None:
            record["finetune"] = {
                "frozen_epochs": plan.frozen_epochs, "unfrozen_at_epoch": plan.applied_at_epoch,
                "backbone_lr": plan.backbone_lr, "lr_decay": plan.lr_decay,
                "layers": len(plan.layers),
                "params_after": self.param_counts() if plan.applied_at_epoch else None,
                "trainable_layers_after": self.trainable_layers() if plan.applied_at_epoch else None,
            }
        return record

    def layer_rows(self) -> list[dict[str, Any]]:
        """layers.json: every backbone layer in forward order, its stage and whether it trains."""
        stage_of = {n: s for s, members in self.stages for n in members}
        initial = set(self.initial_trainable)
        later = set(self.finetune.layers) if self.finetune else set()
        rows = []
        for index, name in enumerate(self.layer_names):
            module = self.layer(name)
            rows.append({
                "index": index, "from_head": index - len(self.layer_names), "name": name,
                "type": type(module).__name__, "stage": stage_of.get(name),
                "params": sum(p.numel() for p in _direct_params(module)),
                "trainable": name in initial,
                **({"unfrozen_by_finetune": name in later and name not in initial}
                   if self.finetune else {}),
            })
        return rows

    def stage_table(self, in_shape: InShape) -> str:
        """Per-stage rows (output shape, parameters, trainable layers) for summary.txt."""
        shapes: dict[str, Any] = {}
        handles = []

        def hook_for(stage: str):
            def hook(_module: nn.Module, _args: Any, out: Any) -> None:
                if isinstance(out, torch.Tensor):
                    shapes.setdefault(stage, tuple(out.shape[1:]))
            return hook

        for stage, members in self.stages:
            try:
                module = self.layer(stage)
            except AttributeError:
                module = self.layer(members[-1])
            handles.append(module.register_forward_hook(hook_for(stage)))
        modes = {m: m.training for m in self.modules()}
        first = next(self.parameters())
        try:
            self.eval()
            with torch.no_grad():
                self(torch.zeros(1, *in_shape, device=first.device, dtype=first.dtype))
        finally:
            for handle in handles:
                handle.remove()
            for module, training in modes.items():
                module.training = training
        rows = []
        for stage, members in self.stages:
            params = [p for n in members for p in _direct_params(self.layer(n))]
            trainable_layers = sum(any(p.requires_grad for p in _direct_params(self.layer(n)))
                                   for n in members)
            status = ("frozen" if trainable_layers == 0 else
                      "trainable" if trainable_layers == len(members) else "partly frozen")
            shape = shapes.get(stage)
            rows.append((stage, _shape_text(shape), f"{sum(p.numel() for p in params):,}",
                         f"{sum(p.numel() for p in params if p.requires_grad):,}",
                         f"{trainable_layers}/{len(members)}", status))
        headers = ("Stage", "Output Shape", "Param #", "Trainable", "Layers", "")
        widths = [max(len(h), *(len(r[i]) for r in rows)) + 3 for i, h in enumerate(headers)]
        line = lambda cells: (" " + "".join(c.ljust(w) for c, w in zip(cells, widths))).rstrip()
        total = sum(widths) + 1
        trainable = len(self.trainable_layers())
        title = (f'Backbone "{self.spec}": {len(self.layer_names)} layers (modules holding '
                 f"parameters), {trainable} trainable; BatchNorm of frozen layers "
                 f"{'in eval mode' if self.bn_frozen else 'updates its statistics'}.")
        out = [title, "_" * total, line(headers), "=" * total, *(line(r) for r in rows),
               "_" * total]
        if self.finetune is not None:
            plan = self.finetune
            out.append(f"Finetune: after {plan.frozen_epochs} frozen epoch(s), {len(plan.layers)} "
                       f"layers train at {plan.backbone_lr if plan.backbone_lr is not None else 'train.lr'}"
                       + (f", x{plan.lr_decay} per stage towards the input" if plan.lr_decay != 1 else "")
                       + ".")
        return "\n".join(out)


def _shape_text(shape: tuple[int, ...] | None) -> str:
    if shape is None:
        return ""
    return "(" + ", ".join("None" if d is None else str(d) for d in keras_shape_tuple(shape)) + ")"


# --------------------------------------------------------------------------- the builder

@MODELS.register("backbone", "timm / torchvision / cnnlab feature extractor + head, layer freezing")
def build_backbone(cfg: BackboneModelConfig, in_shape: InShape, num_classes: int) -> BackboneNet:
    _check_arch(cfg)
    channels, height, width = in_shape
    size = pair(cfg.input_size) if cfg.input_size is not None else (height, width)
    load = _LOAD_WEIGHTS.get()
    weights = resolve_weights(cfg, fetch=load) if cfg.loads_weights else None
    if weights is not None and not load:
        weights.path = None  # the architecture only: a saved run's weights replace them
    info: dict[str, Any] = {"weights": weights.origin if weights else "random initialisation"}

    file_normalization = None
    if cfg.source == "timm":
        model = _timm_model(cfg, weights)
        extractor_channels = 3
    elif cfg.source == "torchvision":
        model = _torchvision_model(cfg, weights)
        extractor_channels = 3
    else:
        model, cnn_info = _cnnlab_model(cfg, (channels, *size))
        extractor_channels = cnn_info.pop("channels")
        info["experiment"] = cnn_info.pop("experiment")
        if weights is not None and weights.path is None and cnn_info.get("mean"):
            file_normalization = (tuple(cnn_info["mean"]), tuple(cnn_info["std"]))
    if channels not in (1, extractor_channels):
        raise ConfigError(f"model.backbone: {cfg.backbone} takes {extractor_channels}-channel "
                          f"images but the data has {channels}; set data.channels: "
                          f"{extractor_channels}.")
    extractor = FeatureExtractor(model, spec=cfg.backbone if cfg.source != "cnnlab"
                                 else f"cnnlab:{info['experiment']}",
                                 forward_features=cfg.source == "timm")
    try:
        feature_shape, layer_names = _trace(extractor, (extractor_channels, *size))
    except ConfigError:
        raise
    except (RuntimeError, ValueError) as exc:
        raise _too_small_error(extractor, (extractor_channels, *size), exc) from None
    if min(feature_shape) == 0:
        raise _too_small_error(extractor, (extractor_channels, *size),
                               RuntimeError(f"empty feature maps {feature_shape}"))
    if weights is not None and weights.path is not None and (
            isinstance(cfg.pretrained, str) or cfg.source == "cnnlab"):
        # After the trace: modules the features do not use are gone, so need no tensors.
        state = load_tensors(weights.path)
        info["loaded"] = load_matching(model, state, f"model.pretrained ({weights.path})")
        if "mean" in state and "std" in state:  # a cnnlab Classifier's own input scaling
            file_normalization = (tuple(state["mean"].flatten().tolist()),
                                  tuple(state["std"].flatten().tolist()))

    head_cfg = SequentialModelConfig(layers=cfg.head, init=cfg.init, output_l2=cfg.output_l2)
    taken = [s.name for s in cfg.head if s.name in ("backbone", "resizing")]
    if taken:
        raise ConfigError(f"model.head: the layer name {taken[0]!r} is reserved.")
    try:
        head = build_sequential(head_cfg, feature_shape, num_classes)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("model.layers", "model.head")) from None

    net = BackboneNet(resizing=Resizing(size) if cfg.input_size is not None else None,
                      backbone=extractor, head=OrderedDict(head.named_children()),
                      in_channels=extractor_channels, bn=cfg.bn)
    net.layer_names = layer_names
    net.stages = _stages(model, layer_names, cfg.source)
    info["feature_shape"] = keras_shape(feature_shape)
    if cfg.input_size is not None:
        info["input_size"] = list(size)

    # Input scaling the weights expect (0-255 scale, as the Classifier applies it).
    use_backbone_scaling = cfg.normalization == "backbone" or (
        cfg.normalization == "auto" and weights is not None)
    if use_backbone_scaling:
        if file_normalization is not None:
            net.input_normalization = file_normalization
            info["normalization"] = "the weights file's own mean/std"
        elif weights is not None and weights.mean is not None:
            net.input_normalization = (tuple(255.0 * m for m in weights.mean),
                                       tuple(255.0 * s for s in weights.std))
            info["normalization"] = f"{cfg.source} pretrained mean/std"
        elif cfg.normalization == "backbone":
            raise ConfigError(f"model.normalization: backbone, but {cfg.backbone} with these "
                              "weights has no known mean/std; use normalization: data.")
    if net.input_normalization is None:
        info["normalization"] = "data.normalization"

    # Freezing: freeze all / none, then unfreeze a selection.
    freeze = cfg.freeze
    if freeze == "auto":
        freeze = "all" if weights is not None or cfg.finetune is not None else "none"
    info["freeze"] = freeze
    if freeze == "all":
        net.set_trainable(layer_names, False)
        if cfg.unfreeze is not None:
            net.set_trainable(_select(layer_names, cfg.unfreeze, "model.unfreeze"), True)
    if cfg.finetune is not None:
        ft = cfg.finetune
        net.finetune = FinetunePlan(ft.frozen_epochs,
                                    _select(layer_names, ft.unfreeze, "model.finetune.unfreeze"),
                                    ft.backbone_lr, ft.lr_decay)
        if ft.frozen_epochs == 0:
            net.start_finetune(0)
    net.info = info
    net.initial_trainable = net.trainable_layers()
    net.initial_counts = net.param_counts()
    return net.train()

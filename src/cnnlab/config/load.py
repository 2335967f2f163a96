"""Reading an experiment file (plus ``--set`` overrides) into a validated ExperimentConfig.

Every failure becomes a :class:`ConfigError` whose message names the file, the YAML path of
the bad key, the value found and what is allowed.
"""

from __future__ import annotations

import re
import reprlib
import types
import typing
from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import BaseModel, ValidationError

from cnnlab.config.schema import ExperimentConfig
from cnnlab.errors import ConfigError


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> ExperimentConfig:
    """Read ``path``, apply ``key.path=value`` overrides and validate the result."""
    path = Path(path)
    raw = read_yaml(path)
    for override in overrides:
        apply_override(raw, override)
    return validate_config(raw, source=str(path))


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"Experiment file {path} does not exist (or is not a file).")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}".replace("\n", " ")) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a UTF-8 text file.") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of sections (name, data, model, train, "
                          f"...), not a {type(raw).__name__}.")
    return raw


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Set ``a.b.c=value`` in the nested mapping; the value is read as YAML (``1e-3``, ``[a, b]``)."""
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"Override {override!r} must look like key.path=value, "
                          "e.g. --set train.lr=0.001.")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    set_value(raw, key.strip(), value, what=f"Override {override!r}")


def set_value(raw: dict[str, Any], key: str, value: Any, *, what: str = "") -> None:
    """Set the dotted ``key`` (``train.lr``, ``model.layers.0.conv2d.filters``) to ``value``.

    Missing sections are created (validation then names an unknown key); a list index must
    exist already.
    """
    what = what or f"Setting {key!r}"
    parts = key.split(".")
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"{what}: {'.'.join(parts[:i])} is not a section.")
        if node.get(part) is None:
            node[part] = {}
        node = node[part]
    last = parts[-1]
    if isinstance(node, list) and last.isdigit() and int(last) < len(node):
        node[int(last)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(f"{what}: {'.'.join(parts[:-1])} is not a section.")


_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 80
_SHORT.maxlevel, _SHORT.maxlist = 2, 4


def validate_config(raw: dict[str, Any], source: str = "config") -> ExperimentConfig:
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def format_validation_error(exc: ValidationError, source: str, *, kind: str = "experiment",
                            root: type[BaseModel] = ExperimentConfig) -> str:
    problems: list[str] = []
    seen: set[tuple[str, ...]] = set()
    for err in exc.errors(include_url=False):
        # Union members add parts such as "constrained-int" that are not YAML keys: drop them,
        # and report each YAML path once (its first problem) rather than once per member.
        loc = tuple(str(p) for p in err["loc"] if re.fullmatch(r"[A-Za-z0-9_]+", str(p)))
        if loc in seen:
            continue
        seen.add(loc)
        problems.append(_describe({**err, "loc": yaml_path(loc, root)}, raw_loc=loc, root=root))
    head = f"Invalid {kind} {source}: "
    if len(problems) == 1:
        return head + problems[0]
    return head + f"{len(problems)} problems: " + " ".join(
        f"({i}) {p}" for i, p in enumerate(problems, 1))


def _describe(err: dict[str, Any], raw_loc: tuple[str, ...],
              root: type[BaseModel] = ExperimentConfig) -> str:
    loc = [str(p) for p in err["loc"]]
    where = ".".join(loc) or "<top level>"
    value = err.get("input")
    if err["type"] == "extra_forbidden":
        allowed = allowed_keys(list(raw_loc[:-1]), root)
        hint = f" Allowed keys there: {', '.join(allowed)}." if allowed else ""
        return f"unknown key `{where}`.{hint}"
    if err["type"] == "missing":
        return f"`{where}` is required but missing."
    # Bounded: YAML aliases can make a few lines into a list of a billion items.
    shown = _SHORT.repr(value) if not isinstance(value, dict) else "a mapping"
    return f"`{where}` = {shown}: {err['msg']}."


def yaml_path(loc: tuple[str, ...], root: type[BaseModel] = ExperimentConfig) -> tuple[str, ...]:
    """Drop the union tags pydantic adds for ``name:``-selected sections (model, loss).

    Layer and augmentation tags stay: in the one-key form (``- conv2d: {...}``) they are keys.
    """
    shown: list[str] = []
    model: Any = root
    for part in loc:
        unwrapped = _unwrap(model) if not part.isdigit() else model
        if isinstance(unwrapped, list):
            tagged_by_name = any(
                "name" in c.model_fields and part in typing.get_args(c.model_fields["name"].annotation)
                for c in unwrapped)
            if tagged_by_name:
                model = _step(model, part)
                continue
        shown.append(part)
        model = _step(model, part) if model is not None else None
    return tuple(shown)


def allowed_keys(loc: list[str], root: type[BaseModel] = ExperimentConfig) -> list[str]:
    """Field names of the model at ``loc`` in ``root`` (ExperimentConfig), following tagged unions."""
    model: Any = root
    for part in loc:
        model = _step(model, part)
        if model is None:
            return []
    model = _unwrap(model)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _step(model: Any, part: str) -> Any:
    """Follow one location part: a field name, a list index or a union tag."""
    if part.isdigit():
        return model  # a list index: the next step unwraps list[...]
    model = _unwrap(model)
    if isinstance(model, list):  # candidates of a union: pick the one whose tag is `part`
        for candidate in model:
            for field in ("type", "name"):
                info = candidate.model_fields.get(field)
                if info is not None and part in typing.get_args(info.annotation):
                    return candidate
        return None
    if isinstance(model, type) and issubclass(model, BaseModel) and part in model.model_fields:
        return model.model_fields[part].annotation
    return None


def _unwrap(tp: Any) -> Any:
    """Strip Optional/Annotated/list so what is left is a model or a list of union members."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (list, tuple):
            tp = typing.get_args(tp)[0]
        elif origin is typing.Union or origin is types.UnionType:
            members = [a for a in typing.get_args(tp) if a is not type(None)]
            models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
            if len(models) == 1 and len(members) == 1:
                tp = models[0]
            elif models:
                return models
            else:
                return tp
        else:
            return tp

"""Property-based fuzzing of experiment configs and ``--set`` overrides (Hypothesis).

Values are drawn from the schema's own types (its Literal names, number bounds, nested
sections) mixed with garbage. The properties: reading a config either gives a valid
ExperimentConfig or a ConfigError (exit code 2), never another exception; a valid config
survives the round trip through config.yaml (what `cnnlab resume` reads back); and its run
folder path either resolves inside runs_dir or is refused. Nothing is trained.

Budget: 200 examples with a fixed seed when ``CI`` is set (``.ci/run``), 1,000 random ones
otherwise; ``CNNLAB_FUZZ_EXAMPLES`` overrides both.
"""

from __future__ import annotations

import os
import types
import typing
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from cnnlab.config.load import apply_override, validate_config
from cnnlab.config.schema import ExperimentConfig
from cnnlab.data.sources import check_source_keys
from cnnlab.errors import CnnlabError, ConfigError
from cnnlab.store.paths import safe_run_path

CI = bool(os.environ.get("CI"))
EXAMPLES = int(os.environ.get("CNNLAB_FUZZ_EXAMPLES") or (200 if CI else 1000))
FUZZ = settings(max_examples=EXAMPLES, derandomize=CI, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

GARBAGE = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
    st.text(max_size=12), st.sampled_from(["", "..", "../x", "/abs", "a\x00b", "1e-3", "[1,",
                                           "{", "null", "-1", "nan", "inf", "0x10"]),
    st.lists(st.integers(-3, 300), max_size=3), st.dictionaries(st.text(max_size=5),
                                                                st.integers(), max_size=2))
NAMES = st.one_of(st.from_regex(r"[A-Za-z0-9_.\-]{1,8}(/[A-Za-z0-9_.\-]{1,8}){0,2}", fullmatch=True),
                  st.sampled_from(["..", "a/..", "../../x", "./a", "/tmp/x", "a//b", "a\x00b",
                                   "a\\b", ".", "ok/name"]))


def _members(tp):
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _members(typing.get_args(tp)[0])
    if origin is typing.Union or origin is types.UnionType:
        return [m for a in typing.get_args(tp) for m in _members(a)]
    return [tp]


def values_for(tp, depth: int = 0) -> st.SearchStrategy:
    """Values of the schema type ``tp`` (roughly: bounds are not honoured) or garbage."""
    choices = []
    for member in _members(tp):
        origin = typing.get_origin(member)
        if origin is typing.Literal:
            choices.append(st.sampled_from(typing.get_args(member)))
        elif isinstance(member, type) and issubclass(member, BaseModel):
            if depth < 3:
                choices.append(section(member, depth + 1))
        elif member is bool:
            choices.append(st.booleans())
        elif member is int:
            choices.append(st.integers(-2, 300))
        elif member is float:
            choices.append(st.floats(-1.0, 2.0) | st.sampled_from([0.0, 0.5, 1e-3]))
        elif member is str:
            choices.append(st.text(max_size=10))
        elif member is Path:
            choices.append(st.sampled_from(["runs", "/tmp/x", "a/../b", "a\x00b"]))
        elif member is type(None):
            choices.append(st.none())
        elif origin in (list, tuple) and depth < 3:
            args = [a for a in typing.get_args(member) if a is not Ellipsis] or [int]
            choices.append(st.lists(values_for(args[0], depth + 1), max_size=3))
        elif origin is dict:
            choices.append(st.dictionaries(st.text(max_size=6), st.floats(0.1, 3.0), max_size=2))
    choices.append(GARBAGE)
    return st.one_of(*choices)


def section(model: type[BaseModel], depth: int = 0) -> st.SearchStrategy:
    """A mapping with any subset of ``model``'s keys (plus, rarely, an unknown one)."""
    optional = {key: values_for(field.annotation, depth) for key, field in model.model_fields.items()}
    return st.fixed_dictionaries({}, optional={**optional, "unknwon_key": GARBAGE})


EXPERIMENTS = st.builds(lambda body, name: {**body, "name": name},
                        section(ExperimentConfig), NAMES)


def check_valid(cfg: ExperimentConfig, runs_root: Path) -> None:
    again = validate_config(cfg.model_dump(mode="json"), source="round trip")
    assert again == cfg
    try:
        check_source_keys(cfg.data)
    except ConfigError:
        pass
    try:
        path = safe_run_path(runs_root, cfg.name)
    except ConfigError:
        return
    root = runs_root.resolve()
    assert root in path.resolve().parents


@FUZZ
@given(raw=EXPERIMENTS)
def test_random_experiments_validate_or_give_a_config_error(raw, tmp_path_factory) -> None:
    try:
        cfg = validate_config(raw)
    except ConfigError as exc:
        assert str(exc).startswith("Invalid experiment")
        return
    check_valid(cfg, tmp_path_factory.getbasetemp() / "fuzz-runs")


def _paths(model: type[BaseModel], prefix: str = "", depth: int = 0) -> list[str]:
    out = []
    for key, field in model.model_fields.items():
        out.append(prefix + key)
        members = [m for m in _members(field.annotation)
                   if isinstance(m, type) and issubclass(m, BaseModel)]
        if members and depth < 2:
            out.extend(_paths(members[0], f"{prefix}{key}.", depth + 1))
    return out


KEYS = st.one_of(st.sampled_from(_paths(ExperimentConfig)), st.text(max_size=12),
                 st.sampled_from(["train..lr", ".", "model.layers.0.conv2d.filters", "augment.0",
                                  "data.root.x", "=", "name"]))
OVERRIDES = st.one_of(
    st.builds(lambda k, v: f"{k}={v}", KEYS, st.one_of(st.text(max_size=12), st.sampled_from(
        ["1e-3", "-1", "[1, 2]", "{a: 1}", "null", "..", "../../x", "true", "[", "''", "0"]))),
    st.text(max_size=20))


@FUZZ
@given(overrides=st.lists(OVERRIDES, min_size=1, max_size=4))
def test_random_overrides_validate_or_give_a_config_error(overrides, tmp_path_factory) -> None:
    raw = {"name": "fuzz/base", "data": {"name": "digits"},
           "model": {"layers": [{"conv2d": {"filters": 4}}, {"flatten": {}}]}}
    try:
        for override in overrides:
            apply_override(raw, override)
        cfg = validate_config(raw)
    except ConfigError:
        return
    check_valid(cfg, tmp_path_factory.getbasetemp() / "fuzz-runs")


def test_the_fuzzer_reaches_valid_configs() -> None:
    # Guards the strategies: if they only ever produced garbage, the properties above would
    # hold trivially. A fixed seed keeps this check stable.
    valid = 0

    @settings(max_examples=100, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(raw=EXPERIMENTS)
    def count(raw):
        nonlocal valid
        try:
            validate_config(raw)
            valid += 1
        except CnnlabError:
            pass

    count()
    assert valid >= 5, valid

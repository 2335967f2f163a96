"""train.precision: auto: a timed choice per host and model, cached, recorded, harmless to the run."""

import json

import pytest
import torch
from torch import nn

from cnnlab.config import validate_config
from cnnlab.pipeline import run_experiment
from cnnlab.train import precision as precision_module
from cnnlab.train.precision import CACHE_FILE, resolve_precision, time_precisions
from conftest import tiny_experiment


def small_net(width: int = 4) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 3))


def fake_timings(monkeypatch, fp32: float, bf16: float) -> list:
    calls = []

    def timed(*args, **kwargs):
        calls.append(args)
        return fp32, bf16

    monkeypatch.setattr(precision_module, "time_precisions", timed)
    return calls


@pytest.mark.parametrize("requested", ["32", "bf16-mixed", "16-mixed"])
def test_an_explicit_precision_is_kept_without_timing(requested, monkeypatch, tmp_path):
    calls = fake_timings(monkeypatch, 1.0, 1.0)
    choice = resolve_precision(requested, small_net(), (3, 8, 8), 4, cache_dir=tmp_path)
    assert (choice.precision, choice.requested, calls) == (requested, requested, [])


@pytest.mark.parametrize("fp32,bf16,expected", [
    (1.0, 0.5, "bf16-mixed"),                      # twice as fast: AMX-like
    (1.0, 0.9, "bf16-mixed"),                      # just past the margin
    (1.0, 0.95, "32"),                             # a 5% gain is not worth the rounding
    (0.53, 0.67, "32"),                            # slower, as on AVX-512-BF16 without AMX
])
def test_auto_on_a_cpu_takes_bf16_only_for_a_clear_gain(fp32, bf16, expected, monkeypatch,
                                                        tmp_path):
    fake_timings(monkeypatch, fp32, bf16)
    choice = resolve_precision("auto", small_net(), (3, 8, 8), 4, cache_dir=tmp_path)
    assert choice.precision == expected
    assert (choice.fp32_s_per_step, choice.bf16_s_per_step) == (fp32, bf16)
    assert f"{fp32 / bf16:.2f}x" in choice.reason and choice.cpu


def test_the_timing_is_cached_per_model_and_batch(monkeypatch, tmp_path):
    calls = fake_timings(monkeypatch, 1.0, 0.5)
    first = resolve_precision("auto", small_net(), (3, 8, 8), 4, cache_dir=tmp_path)
    again = resolve_precision("auto", small_net(), (3, 8, 8), 4, cache_dir=tmp_path)
    assert len(calls) == 1 and (first.cached, again.cached) == (False, True)
    assert again.precision == first.precision == "bf16-mixed"
    resolve_precision("auto", small_net(width=8), (3, 8, 8), 4, cache_dir=tmp_path)
    resolve_precision("auto", small_net(), (3, 8, 8), 16, cache_dir=tmp_path)
    assert len(calls) == 3
    assert len(json.loads((tmp_path / CACHE_FILE).read_text())) == 3


def test_a_corrupt_cache_is_measured_again_not_an_error(monkeypatch, tmp_path):
    (tmp_path / CACHE_FILE).write_text("{not json")
    calls = fake_timings(monkeypatch, 1.0, 2.0)
    choice = resolve_precision("auto", small_net(), (3, 8, 8), 4, cache_dir=tmp_path)
    assert choice.precision == "32" and len(calls) == 1
    assert json.loads((tmp_path / CACHE_FILE).read_text())  # rewritten whole


def test_an_unwritable_cache_costs_nothing_but_the_cache(monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    fake_timings(monkeypatch, 1.0, 2.0)
    choice = resolve_precision("auto", small_net(), (3, 8, 8), 4, cache_dir=blocker / "cache")
    assert choice.precision == "32"


def test_a_cuda_device_takes_mixed_precision_without_timing(monkeypatch, tmp_path):
    calls = fake_timings(monkeypatch, 1.0, 1.0)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("auto", small_net(), (3, 8, 8), 4, accelerator="cuda",
                             cache_dir=tmp_path).precision == "bf16-mixed"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_precision("auto", small_net(), (3, 8, 8), 4, accelerator="cuda",
                             cache_dir=tmp_path).precision == "16-mixed"
    assert calls == []


def test_timing_leaves_the_model_and_the_random_state_as_they_were():
    torch.manual_seed(0)
    net = small_net()
    weights = {k: v.clone() for k, v in net.state_dict().items()}
    state = torch.get_rng_state()
    fp32, bf16 = time_precisions(net, (3, 8, 8), 4, rounds=1, warmup=1)
    assert fp32 > 0 and bf16 > 0
    assert torch.equal(torch.get_rng_state(), state)
    for key, value in net.state_dict().items():
        assert torch.equal(value, weights[key]), key


def test_a_run_with_auto_records_its_choice_in_metrics_json(tmp_path):
    cfg = validate_config(tiny_experiment(tmp_path, {"name": "digits"},
                                          train={"epochs": 1, "precision": "auto"}))
    outcome = run_experiment(cfg, say=lambda text: None)
    record = json.loads((outcome.run_dir / "metrics.json").read_text())["precision"]
    assert record["requested"] == "auto" and record["precision"] in ("32", "bf16-mixed")
    assert record["fp32_s_per_step"] > 0 and record["bf16_s_per_step"] > 0
    assert isinstance(record["cpu_flags"], list) and record["cpu"]

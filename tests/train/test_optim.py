import pytest
import torch

from cnnlab.config.schema import TrainConfig
from cnnlab.train import OPTIMIZERS, best_epoch
from cnnlab.train.optim import apply_weight_decay, build_optimizer


def test_registry_matches_the_schema():
    import typing
    allowed = set(typing.get_args(TrainConfig.model_fields["optimizer"].annotation))
    assert set(OPTIMIZERS.names()) == allowed


def test_sgd_options_reach_torch():
    p = [torch.nn.Parameter(torch.ones(2))]
    opt = build_optimizer(p, TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True))
    assert isinstance(opt, torch.optim.SGD)
    assert opt.defaults["momentum"] == 0.9 and opt.defaults["nesterov"] is True


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_fused_update_matches_torchs_loop(name, monkeypatch):
    torch.manual_seed(0)
    start, grads = torch.randn(50), [torch.randn(50) for _ in range(3)]
    cfg = TrainConfig(optimizer=name, lr=0.01, momentum=0.9, nesterov=True)
    fused, loop = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    opt = build_optimizer([fused], cfg)
    assert opt.defaults["fused"] is True
    monkeypatch.setattr("cnnlab.train.optim.FUSED", {})
    reference = build_optimizer([loop], cfg)
    assert not reference.defaults["fused"]
    for grad in grads:
        for p, o in ((fused, opt), (loop, reference)):
            p.grad = grad.clone()
            o.step()
    assert torch.allclose(fused.detach(), loop.detach(), atol=1e-6)


def test_lookahead_pulls_the_weights_back_every_k_steps():
    p = torch.nn.Parameter(torch.zeros(1))
    cfg = TrainConfig(optimizer="sgd", lr=1.0, lookahead={"k": 2, "alpha": 0.5})
    opt = build_optimizer([p], cfg)
    assert opt.param_groups[0]["lr"] == 1.0  # schedules reach the wrapped optimizer's groups
    for _ in range(4):
        p.grad = torch.full((1,), -1.0)  # each SGD step moves p by +1
        opt.step()
    # timm's slow weights start at the first sync (step 2, p = 2); at step 4 the fast weights
    # reached 4, the slow ones move half-way there, and training resumes from them.
    assert p.item() == 3.0


def test_decoupled_weight_decay_is_lr_times_decay():
    p = torch.nn.Parameter(torch.full((3,), 2.0))
    p.grad = torch.zeros(3)
    opt = torch.optim.SGD([p], lr=0.1)
    apply_weight_decay(opt, 0.5)
    assert torch.allclose(p.detach(), torch.full((3,), 2.0 * (1 - 0.1 * 0.5)))


def test_coupled_weight_decay_follows_torchs_sgd_weight_decay_through_momentum():
    ours, reference = (torch.nn.Parameter(torch.tensor([2.0, -1.0])) for _ in range(2))
    opt = torch.optim.SGD([ours], lr=0.1, momentum=0.85, nesterov=True)
    ref = torch.optim.SGD([reference], lr=0.1, momentum=0.85, nesterov=True, weight_decay=0.5)
    for step in range(4):
        for p in (ours, reference):
            p.grad = torch.tensor([0.3, 0.1]) * (step + 1)
        apply_weight_decay(opt, 0.5, "coupled")
        opt.step()
        ref.step()
    assert torch.allclose(ours.detach(), reference.detach())


def test_a_groups_wd_mult_scales_its_decay_in_both_modes():
    for mode in ("decoupled", "coupled"):
        a, b = torch.nn.Parameter(torch.ones(1)), torch.nn.Parameter(torch.ones(1))
        opt = torch.optim.SGD([{"params": [a]}, {"params": [b], "wd_mult": 0.25}], lr=0.1)
        for p in (a, b):
            p.grad = torch.zeros(1)
        apply_weight_decay(opt, 0.4, mode)
        opt.step()
        assert torch.allclose(1 - a.detach(), 4 * (1 - b.detach())), mode


def test_norm_bias_multipliers_reach_their_param_group():
    from cnnlab.train.module import param_groups

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    cfg = TrainConfig(lr=1.5, norm_bias_lr_mult=64, norm_bias_wd_mult=1 / 64)
    weights, scaled = param_groups(net, cfg)
    assert [tuple(p.shape) for p in weights["params"]] == [(4, 3, 3, 3)]
    assert len(scaled["params"]) == 3  # conv bias, BatchNorm weight and bias
    assert scaled["lr"] == 1.5 * 64 and scaled["wd_mult"] == 1 / 64


def test_best_epoch_is_the_first_best_and_ignores_nan():
    history = [{"epoch": 1, "val_loss": 0.5}, {"epoch": 2, "val_loss": 0.3},
               {"epoch": 3, "val_loss": 0.3}, {"epoch": 4, "val_loss": float("nan")}]
    assert best_epoch(history, "val_loss", "min") == 2
    acc = [{"epoch": 1, "val_accuracy": 0.5}, {"epoch": 2, "val_accuracy": 0.7},
           {"epoch": 3, "val_accuracy": 0.7}]
    assert best_epoch(acc, "val_accuracy", "max") == 2
    assert best_epoch([], "val_loss", "min") is None


def test_muon_steps_non_filters_exactly_as_torchs_nesterov_sgd():
    torch.manual_seed(0)
    ours, reference = (torch.nn.Parameter(torch.ones(5)) for _ in range(2))
    cfg = TrainConfig(optimizer="muon", lr=0.1, momentum=0.85, nesterov=True)
    opt = build_optimizer([ours], cfg)
    ref = torch.optim.SGD([reference], lr=0.1, momentum=0.85, nesterov=True)
    for _ in range(3):
        grad = torch.randn(5)
        ours.grad, reference.grad = grad.clone(), grad.clone()
        opt.step()
        ref.step()
    assert torch.allclose(ours.detach(), reference.detach())


def test_muon_orthogonalises_a_filter_banks_update_and_renormalises_it():
    from cnnlab.train.optim import split_filters

    torch.manual_seed(0)
    filters, bias = torch.nn.Parameter(torch.randn(8, 4, 3, 3)), torch.nn.Parameter(torch.zeros(8))
    cfg = TrainConfig(optimizer="muon", lr=0.5, momentum=0.0, muon={"lr": 0.01, "momentum": 0.0})
    groups = split_filters([filters, bias], cfg)
    assert [len(g["params"]) for g in groups] == [1, 1]
    assert groups[1]["use_muon"] and groups[1]["lr"] == 0.01 and groups[1]["wd_mult"] == 0.0
    opt = build_optimizer([filters, bias], cfg)
    # An ill-conditioned gradient: one direction 100 times stronger than another.
    u, _, v = torch.linalg.svd(torch.randn(8, 36), full_matrices=False)
    filters.grad = (u @ torch.diag(torch.logspace(0, 2, 8)) @ v).view(8, 4, 3, 3)
    bias.grad = torch.zeros(8)
    before = filters.detach().clone()
    calls = []
    opt.step(lambda: calls.append(1) or torch.tensor(0.0))  # Lightning passes a closure
    assert calls == [1]
    normalised = before * (8 ** 0.5 / before.norm())
    step = ((normalised - filters.detach()) / 0.01).reshape(8, -1)
    singular = torch.linalg.svdvals(step)
    assert singular.max() / singular.min() < 4  # the raw gradient's ratio is 100
    assert abs(filters.detach().norm() - 8 ** 0.5) < 0.1


def test_muon_trains_a_conv_net_end_to_end(tmp_path):
    from cnnlab.config import validate_config
    from cnnlab.pipeline import run_experiment
    from conftest import tiny_experiment

    model = {"layers": [{"conv2d": {"filters": 4, "padding": "same"}},
                        {"batchnorm": {}}, {"activation": {"activation": "relu"}},
                        {"global_avg_pool": {}}]}
    cfg = validate_config(tiny_experiment(
        tmp_path, {"name": "digits"}, model=model,
        train={"epochs": 1, "optimizer": "muon", "lr": 0.05, "momentum": 0.85,
               "nesterov": True, "weight_decay": 1e-4, "weight_decay_mode": "coupled",
               "schedule": {"name": "linear", "warmup": 0.0, "final_factor": 0.0}}))
    outcome = run_experiment(cfg, say=lambda text: None)
    assert outcome.metrics["status"] == "completed"

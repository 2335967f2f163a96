import pytest
import torch

from cnnlab.config.schema import TrainConfig
from cnnlab.train import OPTIMIZERS, best_epoch
from cnnlab.train.optim import apply_decoupled_weight_decay, build_optimizer


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
    apply_decoupled_weight_decay(opt, 0.5)
    assert torch.allclose(p.detach(), torch.full((3,), 2.0 * (1 - 0.1 * 0.5)))


def test_best_epoch_is_the_first_best_and_ignores_nan():
    history = [{"epoch": 1, "val_loss": 0.5}, {"epoch": 2, "val_loss": 0.3},
               {"epoch": 3, "val_loss": 0.3}, {"epoch": 4, "val_loss": float("nan")}]
    assert best_epoch(history, "val_loss", "min") == 2
    acc = [{"epoch": 1, "val_accuracy": 0.5}, {"epoch": 2, "val_accuracy": 0.7},
           {"epoch": 3, "val_accuracy": 0.7}]
    assert best_epoch(acc, "val_accuracy", "max") == 2
    assert best_epoch([], "val_loss", "min") is None

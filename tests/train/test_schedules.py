import pytest
import torch

from cnnlab.config.schema import ScheduleConfig, TrainConfig
from cnnlab.train.module import param_groups
from cnnlab.train.schedules import SCHEDULES, build_step_scheduler


@pytest.mark.parametrize("name, warmup, final, progress, expected", [
    ("constant", 0.0, 0.0, 0.7, 1.0),
    ("constant", 0.2, 0.0, 0.1, 0.5),
    ("linear", 0.2, 0.0, 0.0, 0.0),
    ("linear", 0.2, 0.0, 0.2, 1.0),
    ("linear", 0.2, 0.0, 0.6, 0.5),
    ("linear", 0.2, 0.1, 1.0, 0.1),
    ("cosine", 0.0, 0.0, 0.5, 0.5),
    ("cosine", 0.0, 0.2, 1.0, 0.2),
    ("cosine", 0.25, 0.0, 0.25, 1.0),
])
def test_multipliers(name, warmup, final, progress, expected):
    cfg = ScheduleConfig(name=name, warmup=warmup, final_factor=final)
    assert SCHEDULES.get(name)(progress, cfg) == pytest.approx(expected)


def test_scheduler_steps_the_lr_every_step():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = build_step_scheduler(opt, ScheduleConfig(name="linear", warmup=0.5), total_steps=4)
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.0, 0.5, 1.0, 0.5])


def test_schedule_and_plateau_are_exclusive():
    with pytest.raises(Exception, match="keep one"):
        TrainConfig(schedule={"name": "linear"}, reduce_lr_on_plateau={})


def test_norm_and_bias_parameters_get_their_own_lr():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4),
                                torch.nn.Flatten(), torch.nn.LazyLinear(2))
    model(torch.zeros(1, 3, 5, 5))
    one = param_groups(model, TrainConfig(lr=0.1))
    assert len(one) == 1 and len(one[0]["params"]) == 6
    two = param_groups(model, TrainConfig(lr=0.1, norm_bias_lr_mult=64))
    weights, scaled = two
    assert {id(p) for p in weights["params"]} == {id(model[0].weight), id(model[3].weight)}
    assert len(scaled["params"]) == 4 and scaled["lr"] == pytest.approx(6.4)

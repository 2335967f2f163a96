"""airbench94's ramped lookahead: alpha schedule and the slow/fast weight sync."""

import torch

from cnnlab.train.averaging import RampedLookahead, ramped_alpha


def test_alpha_starts_at_one_and_falls_cubically_to_its_final_value():
    assert ramped_alpha(0, 100, 0.25) == 1.0
    assert ramped_alpha(100, 100, 0.25) == 0.25
    assert abs(ramped_alpha(50, 100, 0.25) - (1 - 0.75 * 0.125)) < 1e-12
    assert ramped_alpha(150, 100, 0.25) == 0.25  # Lightning's step estimate can fall short


def test_sync_moves_slow_weights_and_resets_fast_ones_buffers_included():
    module = torch.nn.BatchNorm1d(2)
    callback = RampedLookahead(k=5, final_alpha=0.5)
    callback.on_train_start(None, module)
    with torch.no_grad():
        module.bias.fill_(1.0)
        module.running_mean.fill_(2.0)
    callback.sync(module, 0.25)
    assert torch.allclose(module.bias, torch.full((2,), 0.25))
    assert torch.allclose(module.running_mean, torch.full((2,), 0.5))
    assert torch.equal(module.num_batches_tracked, torch.tensor(0))  # integers are left alone
    callback.sync(module, 0.0)  # the end of training: back to the slow weights
    assert torch.allclose(module.bias, torch.full((2,), 0.25))
    restored = RampedLookahead(k=5, final_alpha=0.5)
    restored.load_state_dict(callback.state_dict())
    restored.on_train_start(None, module)  # a resumed run keeps the checkpoint's slow weights
    assert restored.slow is callback.slow

"""The shuffled loader's order is a function of (seed, epoch), whatever came before."""

from __future__ import annotations

import torch

from cnnlab.data.bundle import Split
from cnnlab.data.loader import make_loader


def _split(n: int = 64) -> Split:
    return Split(torch.zeros(n, 1, 2, 2, dtype=torch.uint8), torch.arange(n))


def _order(loader) -> list[int]:
    return torch.cat([labels for _, labels in loader]).tolist()


def test_each_epoch_has_its_own_order_and_a_fresh_loader_reproduces_it():
    loader = make_loader(_split(), 16, shuffle=True, seed=3)
    epochs = []
    for epoch in range(3):
        loader.sampler.set_epoch(epoch)
        epochs.append(_order(loader))
    assert len({tuple(e) for e in epochs}) == 3
    assert all(sorted(e) == list(range(64)) for e in epochs)

    fresh = make_loader(_split(), 16, shuffle=True, seed=3)
    fresh.sampler.set_epoch(2)  # as a resumed run does: no epochs 0 and 1 first
    assert _order(fresh) == epochs[2]
    other_seed = make_loader(_split(), 16, shuffle=True, seed=4)
    other_seed.sampler.set_epoch(2)
    assert _order(other_seed) != epochs[2]


def test_iterating_leaves_the_global_rng_alone():
    loader = make_loader(_split(), 16, shuffle=True, seed=0)
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    _order(loader)
    assert torch.equal(torch.rand(3), expected)


def test_evaluation_loader_keeps_the_stored_order():
    assert _order(make_loader(_split(), 16, shuffle=False)) == list(range(64))

import torch

from cnnlab.evaluate.evaluate import predict_probs, tta_views


def test_views():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4)
    assert len(tta_views(x, "none")) == 1
    flip = tta_views(x, "flip")
    assert len(flip) == 2 and torch.equal(flip[1], x.flip(-1))
    shifted = tta_views(x, "flip_shift")
    assert len(shifted) == 6 and all(v.shape == x.shape for v in shifted)
    assert torch.equal(shifted[2][..., 1:, 1:], x[..., :-1, :-1])  # shifted down-right by one
    assert torch.equal(shifted[3][..., :-1, :-1], x[..., 1:, 1:])  # and up-left


def test_tta_probabilities_are_a_mean_of_views():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    images = torch.randint(0, 256, (5, 1, 4, 4), dtype=torch.uint8)
    plain, _ = predict_probs(model, images, channels_last=False)
    flipped, _ = predict_probs(model, images.flip(-1), channels_last=False)
    both, _ = predict_probs(model, images, channels_last=False, tta="flip")
    assert torch.allclose(both, (plain + flipped) / 2, atol=1e-6)
    assert torch.allclose(both.sum(dim=1), torch.ones(5))

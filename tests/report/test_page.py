"""The report page's hyperparameter table."""

from cnnlab.config.schema import TrainConfig
from cnnlab.report.page import hyperparameters


def rows(**train):
    return dict((k, v) for k, v in hyperparameters(TrainConfig(**train).model_dump(mode="json")))


def test_muons_settings_show_only_when_it_is_the_optimizer():
    muon = rows(optimizer="muon", momentum=0.85, nesterov=True)
    assert muon["muon (conv filters)"].startswith("Muon(lr=0.24")
    assert muon["momentum"] == "0.85" and "nesterov" in muon
    sgd = rows(optimizer="sgd")
    assert "muon (conv filters)" not in sgd and "muon" not in sgd

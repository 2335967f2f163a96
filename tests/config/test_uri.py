"""The tracking URI check that stops a run before training (exit 2)."""

import pytest

from cnnlab.config.uri import check_tracking_uri


@pytest.mark.parametrize("uri", ["http://127.0.0.1:5000", "https://mlflow.example.org",
                                 "file:./mlruns", "file:///tmp/mlruns", "sqlite:///mlflow.db",
                                 "postgresql://user@db:5432/mlflow", "databricks"])
def test_accepted(uri):
    assert check_tracking_uri(uri) == uri


@pytest.mark.parametrize("uri, why", [("htp//127.0.0.1:5000", "no known scheme"),
                                      ("http://", "names no host"),
                                      ("http://127.0.0.1:port", "malformed port"),
                                      ("http://127.0.0.1:99999", "malformed port"),
                                      ("http://a b:5000", "spaces"), ("", "empty"),
                                      ("file:", "names no folder"),
                                      ("./mlruns", "no known scheme")])
def test_refused_with_reason(uri, why):
    with pytest.raises(ValueError, match=why):
        check_tracking_uri(uri)

"""Mean ± sample std and Welch's verdicts, checked against scipy."""

import math

import pytest

from cnnlab.report.significance import mean_std, welch


@pytest.mark.parametrize("values, expected", [
    ([], (math.nan, math.nan)),
    ([0.5], (0.5, math.nan)),
    ([0.5, 0.7], (0.6, math.sqrt(0.02))),
    ([1.0, 1.0, 1.0], (1.0, 0.0)),
])
def test_mean_and_sample_std(values, expected):
    mean, std = mean_std(values)
    for got, want in zip((mean, std), expected):
        assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want)


@pytest.mark.parametrize("a, b, verdict", [
    ([0.80, 0.81, 0.79, 0.80, 0.82], [0.60, 0.61, 0.59, 0.62, 0.60], "significant"),
    ([0.80, 0.81, 0.79, 0.80, 0.82], [0.80, 0.79, 0.81, 0.82, 0.80], "not significant"),
    ([0.80], [0.60, 0.61, 0.59], "cannot judge"),            # one seed on a side
    ([0.80, 0.81], [0.60], "cannot judge"),
    ([0.7, 0.7], [0.7, 0.7], "not significant"),            # identical, no spread
    ([0.7, 0.7], [0.6, 0.6], "cannot judge"),               # no spread to test against
])
def test_welch_verdicts(a, b, verdict):
    result = welch(a, b)
    assert result.verdict == verdict
    if verdict == "cannot judge":
        assert result.p_value is None and result.reason


def test_welch_matches_scipy():
    from scipy.stats import ttest_ind

    a, b = [0.71, 0.74, 0.69], [0.66, 0.70, 0.64, 0.69]
    assert welch(a, b).p_value == pytest.approx(ttest_ind(a, b, equal_var=False).pvalue)
    assert welch(a, b).delta == pytest.approx(sum(a) / 3 - sum(b) / 4)

"""Mean ± sample std over seeds and Welch's t-test: the "is this gain real?" arithmetic that
`cnnlab compare`, sweeps and bench/keras_parity.py share."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Sequence

ALPHA = 0.05
TEST_NAME = "Welch's t-test (two-sided, unequal variances), alpha 0.05"


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; NaN for fewer than two values)."""
    values = [float(v) for v in values]
    if not values:
        return math.nan, math.nan
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, math.nan
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var)


@dataclass
class Significance:
    delta: float  # row mean - baseline mean
    p_value: float | None
    verdict: str  # baseline | significant | not significant | cannot judge
    reason: str = ""

    @property
    def significant(self) -> bool | None:
        return {"significant": True, "not significant": False}.get(self.verdict)

    def text(self, digits: int = 4) -> str:
        if self.verdict == "baseline":
            return "baseline"
        delta = f"{self.delta:+.{digits}f}" if math.isfinite(self.delta) else "n/a"
        if self.verdict == "cannot judge":
            return f"{delta}, cannot judge: {self.reason}"
        return f"{delta}, p={self.p_value:.3g}, {self.verdict}"


def welch(values: Sequence[float], baseline: Sequence[float], alpha: float = ALPHA) -> Significance:
    """Is the difference of the means of ``values`` and ``baseline`` significant?"""
    a, b = [float(v) for v in values], [float(v) for v in baseline]
    delta = (mean_std(a)[0] - mean_std(b)[0]) if a and b else math.nan
    if len(a) < 2 or len(b) < 2:
        return Significance(delta, None, "cannot judge",
                            f"{min(len(a), len(b))} seed(s) on one side; significance needs at least "
                            "2 seeds on each (cnnlab run --seeds N)")
    if mean_std(a)[1] == 0 and mean_std(b)[1] == 0:
        if delta == 0:
            return Significance(delta, 1.0, "not significant", "identical values")
        return Significance(delta, None, "cannot judge", "no spread between seeds on either side")
    from scipy.stats import ttest_ind

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(ttest_ind(a, b, equal_var=False).pvalue)
    verdict = "significant" if p < alpha else "not significant"
    return Significance(delta, p, verdict)

"""Mean opinion score statistics: mean, sample standard deviation and a Student-t confidence interval.

The library holds them so that anything summarising 1-5 scores can use them; the web rating study
(:mod:`sr_app.mos`) does. The t quantile is computed here (the t tail from the regularised incomplete beta
function, inverted by bisection, and the Cornish-Fisher expansion for very large degrees of freedom) so that
SciPy is not needed at run time; it agrees with ``scipy.stats.t.ppf`` to better than 1e-9.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from statistics import NormalDist

_CF_MAX_ITER = 5000
_CF_EPS = 1e-15
_TINY = 1e-300
_LARGE_DF = 2000.0


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """Lentz's evaluation of the continued fraction of I_x(a, b) (Numerical Recipes' ``betacf``)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, _CF_MAX_ITER + 1):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _CF_EPS:
            break
    return h


def _beta_pair(a: float, b: float, x: float, y: float) -> tuple[float, float]:
    """(I_x(a, b), 1 - I_x(a, b)) with y = 1 - x given exactly, each side computed without cancellation."""
    if x <= 0.0:
        return 0.0, 1.0
    if y <= 0.0:
        return 1.0, 0.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(y)
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        lower = front * _beta_continued_fraction(a, b, x) / a
        return lower, 1.0 - lower
    upper = front * _beta_continued_fraction(b, a, y) / b
    return 1.0 - upper, upper


def t_sf(t: float, df: float) -> float:
    """Upper tail P(T > t) of Student's t distribution with ``df`` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    t2 = t * t
    if df <= t2:
        tail = 0.5 * _beta_pair(df / 2.0, 0.5, df / (df + t2), t2 / (df + t2))[0]
    else:
        tail = 0.5 * _beta_pair(0.5, df / 2.0, t2 / (df + t2), df / (df + t2))[1]
    return tail if t >= 0 else 1.0 - tail


def _cornish_fisher(p: float, df: float) -> float:
    """Abramowitz & Stegun 26.7.5: the t quantile as a series in 1/df around the normal quantile."""
    z = NormalDist().inv_cdf(p)
    z2 = z * z
    g1 = (z2 + 1.0) * z / 4.0
    g2 = ((5.0 * z2 + 16.0) * z2 + 3.0) * z / 96.0
    g3 = (((3.0 * z2 + 19.0) * z2 + 17.0) * z2 - 15.0) * z / 384.0
    g4 = ((((79.0 * z2 + 776.0) * z2 + 1482.0) * z2 - 1920.0) * z2 - 945.0) * z / 92160.0
    return z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4


def t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p for Student's t with ``df`` > 0 degrees of freedom (``scipy.stats.t.ppf``)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"t_quantile needs p strictly between 0 and 1, got {p}")
    if not df > 0 or math.isinf(df) or math.isnan(df):
        raise ValueError(f"degrees of freedom must be a positive finite number, got {df}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    if df >= _LARGE_DF:
        return _cornish_fisher(p, df)
    tail = 1.0 - p
    lo, hi = 0.0, 1.0
    while t_sf(hi, df) > tail:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_sf(mid, df) > tail:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class ScoreSummary:
    """n scores summarised: mean (the MOS), sample standard deviation and a two-sided t confidence interval.

    ``std`` and the interval are None for a single score, where no spread can be estimated.
    """

    n: int
    mean: float
    std: float | None
    ci_low: float | None
    ci_high: float | None
    confidence: float = 0.95

    @property
    def half_width(self) -> float | None:
        """Half the confidence interval's width (the '±' value)."""
        return None if self.ci_high is None else self.ci_high - self.mean


def summarize_scores(scores: Iterable[float], confidence: float = 0.95) -> ScoreSummary:
    """Mean, sample std (n - 1) and the ``confidence`` interval mean ± t(1 - alpha/2, n - 1) std / sqrt(n)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence}")
    values = [float(s) for s in scores]
    n = len(values)
    if n == 0:
        raise ValueError("cannot summarise an empty list of scores")
    mean = math.fsum(values) / n
    if n == 1:
        return ScoreSummary(n=1, mean=mean, std=None, ci_low=None, ci_high=None, confidence=confidence)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile(0.5 + confidence / 2.0, n - 1) * std / math.sqrt(n)
    return ScoreSummary(n=n, mean=mean, std=std, ci_low=mean - half, ci_high=mean + half, confidence=confidence)

"""An anytime-valid comparison of two models on live traffic: a normal-mixture confidence
sequence for a difference in means (per-row metric values: 1/0 for a correct label, an
absolute error, ...).

Why not a t-test: an experiment is looked at on every schedule, and stopping at the first look
where a plain test says "significant" turns a promised 5 % false-positive rate into 25-30 %
after 30 looks (`tests/test_sequential.py` measures both in one simulation). The mixture
sequential probability ratio test (Robbins 1970; Johari et al. 2017, "Peeking at A/B tests",
the mSPRT; Howard et al. 2021, the normal-mixture boundary) averages the likelihood ratio over
a normal prior N(0, tau^2) on the effect. By Ville's inequality the ratio crosses 1/alpha with
probability at most alpha at ANY time, so the interval below holds uniformly over every look:

    Lambda_n = sqrt(V / (V + tau^2)) * exp(d^2 tau^2 / (2 V (V + tau^2)))
    d +- sqrt((V (V + tau^2) / tau^2) * (2 log(1/alpha) + log((V + tau^2) / V)))

with d the estimated difference and V its variance. V is estimated from the data (plug-in),
which makes the guarantee asymptotic (Waudby-Smith et al. 2023, "Time-uniform central limit
theory"): hence a minimum number of rows per arm before any decision. The prior's scale tau is
given in standard deviations of the per-row metric (`effect_sd`), so one setting works for
accuracy and for an error in dollars; it tunes where the test is most powerful, never its
validity.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

Decision = Literal["challenger_better", "champion_better", "continue"]
_TINY = 1e-12


@dataclass(frozen=True)
class SequentialBound:
    """One look: the estimate of (challenger - champion), its anytime-valid interval, and the
    mixture likelihood ratio (the test rejects "no difference" once it reaches 1/alpha)."""

    difference: float
    low: float
    high: float
    log_likelihood_ratio: float
    alpha: float
    champion_mean: float
    challenger_mean: float
    champion_rows: int
    challenger_rows: int
    paired: bool
    decision: Decision

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def mixture_interval(
    difference: ArrayLike,
    variance: ArrayLike,
    unit_variance: ArrayLike,
    *,
    alpha: float,
    effect_sd: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Lower and upper ends of the confidence sequence and the log mixture likelihood ratio,
    vectorised over any shape (the simulation test evaluates thousands of experiments at once).

    `variance` is the variance of the estimated difference; `unit_variance` the variance of one
    row's metric, which scales the prior: tau^2 = effect_sd^2 * unit_variance.
    """
    _check_level(alpha, effect_sd)
    d = np.asarray(difference, dtype=np.float64)
    v = np.maximum(np.asarray(variance, dtype=np.float64), _TINY)
    tau2 = np.maximum(effect_sd**2 * np.asarray(unit_variance, dtype=np.float64), _TINY)
    log_lr = 0.5 * np.log(v / (v + tau2)) + d**2 * tau2 / (2 * v * (v + tau2))
    radius = np.sqrt(v * (v + tau2) / tau2 * (2 * math.log(1 / alpha) + np.log((v + tau2) / v)))
    return d - radius, d + radius, log_lr


def two_sample_bound(
    champion: ArrayLike,
    challenger: ArrayLike,
    *,
    alpha: float = 0.05,
    effect_sd: float = 0.1,
    min_rows: int = 100,
    higher_is_better: bool = True,
    paired: bool = False,
) -> SequentialBound:
    """Compare per-row metric values of champion and challenger seen so far.

    `paired`: the two arrays score the same rows (shadow traffic: both versions answered every
    request), so the variance is that of the row-wise differences, which is much smaller when
    the models agree on most rows. Otherwise the arms are independent (canary traffic).
    No decision is taken below `min_rows` per arm: the plug-in variance is not yet reliable.
    """
    a = _values("champion", champion)
    b = _values("challenger", challenger)
    if paired and a.shape != b.shape:
        raise ValueError(
            f"paired comparison needs one challenger value per champion value, got "
            f"{a.size} and {b.size}"
        )
    mean_a = float(a.mean()) if a.size else math.nan
    mean_b = float(b.mean()) if b.size else math.nan
    if min(a.size, b.size) < max(min_rows, 2):
        return SequentialBound(
            difference=mean_b - mean_a,
            low=-math.inf,
            high=math.inf,
            log_likelihood_ratio=0.0,
            alpha=alpha,
            champion_mean=mean_a,
            challenger_mean=mean_b,
            champion_rows=int(a.size),
            challenger_rows=int(b.size),
            paired=paired,
            decision="continue",
        )
    if paired:
        diffs = b - a
        variance = float(diffs.var(ddof=1)) / diffs.size
    else:
        variance = float(a.var(ddof=1)) / a.size + float(b.var(ddof=1)) / b.size
    unit = (float(a.var(ddof=1)) + float(b.var(ddof=1))) / 2
    low, high, log_lr = mixture_interval(
        mean_b - mean_a, variance, unit, alpha=alpha, effect_sd=effect_sd
    )
    lo, hi = float(low), float(high)
    return SequentialBound(
        difference=mean_b - mean_a,
        low=lo,
        high=hi,
        log_likelihood_ratio=float(log_lr),
        alpha=alpha,
        champion_mean=mean_a,
        challenger_mean=mean_b,
        champion_rows=int(a.size),
        challenger_rows=int(b.size),
        paired=paired,
        decision=_decide(lo, hi, higher_is_better),
    )


def _decide(low: float, high: float, higher_is_better: bool) -> Decision:
    """The interval is for challenger - champion; it excludes 0 on one side or the other."""
    if low > 0:
        return "challenger_better" if higher_is_better else "champion_better"
    if high < 0:
        return "champion_better" if higher_is_better else "challenger_better"
    return "continue"


def _values(name: str, values: ArrayLike) -> NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64).ravel()
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: per-row metric values must be finite numbers")
    return array


def _check_level(alpha: float, effect_sd: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha: expected a level in (0, 1), got {alpha!r}")
    if not effect_sd > 0:
        raise ValueError(f"effect_sd: expected a number > 0, got {effect_sd!r}")

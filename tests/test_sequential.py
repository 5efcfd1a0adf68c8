"""The experiment's sequential test: valid however often it is looked at, and able to decide.

The simulation draws thousands of experiments at once (numpy), each looked at on 30 schedules
with 200 new rows per arm between looks, and stops an experiment at its first "significant"
look, as an operator reading a daily dashboard would.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from modelcycle.evaluation import mixture_interval, two_sample_bound

ALPHA = 0.05
LOOKS = 30
ROWS_PER_LOOK = 200
EXPERIMENTS = 4000


def _cumulative_accuracy(rng: np.random.Generator, p: float) -> tuple[np.ndarray, np.ndarray]:
    """Running accuracy and row count at each look, for every simulated experiment."""
    correct = rng.binomial(ROWS_PER_LOOK, p, size=(EXPERIMENTS, LOOKS)).cumsum(axis=1)
    rows = ROWS_PER_LOOK * np.arange(1, LOOKS + 1)
    return correct / rows, np.broadcast_to(rows, correct.shape)


def _looks(p_champion: float, p_challenger: float, seed: int):
    rng = np.random.default_rng(seed)
    mean_a, n = _cumulative_accuracy(rng, p_champion)
    mean_b, _ = _cumulative_accuracy(rng, p_challenger)
    var_a = mean_a * (1 - mean_a) * n / (n - 1)
    var_b = mean_b * (1 - mean_b) * n / (n - 1)
    difference = mean_b - mean_a
    variance = var_a / n + var_b / n
    low, high, _ = mixture_interval(
        difference, variance, (var_a + var_b) / 2, alpha=ALPHA, effect_sd=0.1
    )
    sequential = (low > 0) | (high < 0)
    z = difference / np.sqrt(variance)
    repeated_z = np.abs(z) > 1.959963984540054  # a plain two-sided 5 % test at every look
    return sequential, repeated_z, low, high


def test_no_difference_keeps_the_false_positive_rate_where_a_repeated_test_does_not() -> None:
    sequential, repeated_z, _, _ = _looks(0.8, 0.8, seed=12)
    sequential_rate = sequential.any(axis=1).mean()
    repeated_rate = repeated_z.any(axis=1).mean()
    single_look_rate = repeated_z[:, -1].mean()
    print(
        f"\nfalse positives over {LOOKS} looks: mixture {sequential_rate:.3f}, "
        f"repeated z-test {repeated_rate:.3f} (one look only: {single_look_rate:.3f})"
    )
    assert sequential_rate <= ALPHA
    # The plain test is right at one look, and wrong once it is peeked at 30 times.
    assert abs(single_look_rate - ALPHA) < 0.015
    assert repeated_rate > 2.5 * ALPHA


def test_a_real_difference_is_found_in_the_right_direction_and_power_is_reported() -> None:
    sequential, _, _, high = _looks(0.80, 0.83, seed=13)
    decided = sequential.any(axis=1)
    first = np.where(decided, sequential.argmax(axis=1), LOOKS)
    rows = np.arange(EXPERIMENTS)
    at_decision = np.minimum(first, LOOKS - 1)
    wrong_way = decided & (high[rows, at_decision] < 0)
    power = decided.mean()
    median_look = float(np.median(first[decided]) + 1)
    print(
        f"\npower for 0.80 vs 0.83 within {LOOKS} looks of {ROWS_PER_LOOK} rows per arm: "
        f"{power:.3f}; median deciding look {median_look:.0f}; wrong direction "
        f"{wrong_way.mean():.4f}"
    )
    assert power >= 0.8
    assert wrong_way.mean() <= ALPHA / 2


def test_the_interval_matches_the_published_boundary_on_one_hand_worked_case() -> None:
    # d = 0.02, V = 1e-4, tau^2 = 0.1^2 * 0.25: Howard et al.'s normal-mixture radius.
    v, tau2 = 1e-4, 0.01 * 0.25
    radius = math.sqrt(v * (v + tau2) / tau2 * (2 * math.log(20) + math.log((v + tau2) / v)))
    low, high, log_lr = mixture_interval(0.02, v, 0.25, alpha=0.05, effect_sd=0.1)
    assert float(low) == pytest.approx(0.02 - radius)
    assert float(high) == pytest.approx(0.02 + radius)
    assert radius > 1.96 * math.sqrt(v)  # wider than a one-look interval: the price of peeking
    # The interval excludes 0 exactly when the likelihood ratio reaches 1/alpha.
    assert (float(low) > 0) == (float(log_lr) >= math.log(20))


def test_two_sample_bound_decides_by_direction_and_waits_for_enough_rows() -> None:
    rng = np.random.default_rng(3)
    champion = rng.binomial(1, 0.7, 5000)
    better = rng.binomial(1, 0.8, 5000)
    assert two_sample_bound(champion, better).decision == "challenger_better"
    assert two_sample_bound(better, champion).decision == "champion_better"
    # For an error (lower is better) the same data means the opposite.
    errors = two_sample_bound(champion, better, higher_is_better=False)
    assert errors.decision == "champion_better"
    few = two_sample_bound(champion[:50], better[:50], min_rows=100)
    assert few.decision == "continue" and math.isinf(few.low)


def test_paired_rows_decide_sooner_than_the_same_rows_treated_as_independent() -> None:
    rng = np.random.default_rng(4)
    champion = rng.binomial(1, 0.8, 1500).astype(float)
    # The challenger agrees with the champion except that it fixes 3 % of the rows.
    fixes = (champion == 0) & (rng.random(1500) < 0.15)
    challenger = np.where(fixes, 1.0, champion)
    paired = two_sample_bound(champion, challenger, paired=True)
    unpaired = two_sample_bound(champion, challenger, paired=False)
    assert paired.decision == "challenger_better"
    assert unpaired.decision == "continue"
    assert paired.high - paired.low < unpaired.high - unpaired.low


def test_bad_levels_and_values_are_refused_with_the_field_named() -> None:
    with pytest.raises(ValueError, match="alpha"):
        mixture_interval(0.0, 1.0, 1.0, alpha=1.5, effect_sd=0.1)
    with pytest.raises(ValueError, match="effect_sd"):
        mixture_interval(0.0, 1.0, 1.0, alpha=0.05, effect_sd=0)
    with pytest.raises(ValueError, match="challenger"):
        two_sample_bound([1.0, 0.0], [1.0, math.nan])
    with pytest.raises(ValueError, match="paired"):
        two_sample_bound([1.0, 0.0], [1.0], paired=True)

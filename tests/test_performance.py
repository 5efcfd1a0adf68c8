"""Label-free performance estimation: checked against realised figures on simulated labels."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, roc_auc_score

from modelcycle.monitoring import Calibration, estimate, fit_calibration


def _sample(rng: np.random.Generator, n: int, shift: float = 0.0):
    """True probabilities p; labels drawn from them; the model reports a distorted p**3."""
    p = np.clip(rng.beta(2 + shift, 2, n), 1e-6, 1 - 1e-6)
    y = rng.random(n) < p
    return p**3, y


def test_estimate_matches_realised_figures_after_calibration():
    rng = np.random.default_rng(0)
    holdout_scores, holdout_y = _sample(rng, 20_000)
    calibration = fit_calibration(holdout_y, holdout_scores)
    assert calibration.ece_calibrated < calibration.ece_raw / 3

    # A covariate shift (more high-probability rows): labels still follow the same p.
    scores, y = _sample(rng, 40_000, shift=1.5)
    predicted_positive = scores >= 0.5
    estimated = estimate(scores, predicted_positive, calibration)
    assert estimated["accuracy"] == pytest.approx(accuracy_score(y, predicted_positive), abs=0.01)
    assert estimated["roc_auc"] == pytest.approx(roc_auc_score(y, scores), abs=0.01)


def test_uncalibrated_scores_would_have_misled_the_estimate():
    rng = np.random.default_rng(1)
    scores, y = _sample(rng, 40_000)
    identity = Calibration([0.0, 1.0], [0.0, 1.0], 0, 0.0, 0.0)
    raw = estimate(scores, scores >= 0.5, identity)
    assert abs(raw["accuracy"] - accuracy_score(y, scores >= 0.5)) > 0.05


def test_calibration_round_trips_through_json():
    rng = np.random.default_rng(2)
    scores, y = _sample(rng, 2_000)
    calibration = fit_calibration(y, scores)
    again = Calibration.from_dict(calibration.to_dict())
    probe = np.linspace(0, 1, 11)
    assert np.array_equal(again.apply(probe), calibration.apply(probe))

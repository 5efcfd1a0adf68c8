"""Performance without labels: confidence-based estimation (CBPE) for binary classifiers.

If the champion's probabilities are calibrated, a row scored p is positive with probability
p, so the expected confusion matrix of a window follows from the scores alone. Raw scores of
boosted trees are not reliably calibrated, so training fits an isotonic map from raw score to
observed frequency on the holdout rows (which the model never saw) and stores it with the
reference; monitoring applies it before estimating. The estimate is only as good as that
calibration stays under drift: it moves with covariate shift, not with concept drift, which is
why it is reported next to realised figures whenever labels exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.isotonic import IsotonicRegression

from modelcycle.utils import to_json_dict


@dataclass(frozen=True)
class Calibration:
    """A monotone piecewise-linear map from raw score to probability (isotonic fit)."""

    x: list[float]
    y: list[float]
    holdout_rows: int
    ece_raw: float
    ece_calibrated: float

    def apply(self, scores: np.ndarray) -> np.ndarray:
        return np.interp(scores, np.asarray(self.x), np.asarray(self.y))

    def to_dict(self) -> dict[str, Any]:
        return {"method": "isotonic", **to_json_dict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        return cls(
            x=list(data["x"]),
            y=list(data["y"]),
            holdout_rows=int(data["holdout_rows"]),
            ece_raw=float(data["ece_raw"]),
            ece_calibrated=float(data["ece_calibrated"]),
        )


def expected_calibration_error(truth: np.ndarray, probability: np.ndarray, bins: int = 10) -> float:
    """Mean |observed - predicted| over equal-count bins, weighted by bin size."""
    order = np.argsort(probability, kind="stable")
    error = 0.0
    for chunk in np.array_split(order, bins):
        if chunk.size:
            error += chunk.size * abs(truth[chunk].mean() - probability[chunk].mean())
    return float(error / truth.size)


def fit_calibration(truth: np.ndarray, scores: np.ndarray) -> Calibration:
    """Isotonic map fitted on labelled rows the model was not trained on."""
    truth = np.asarray(truth, dtype="float64")
    scores = np.asarray(scores, dtype="float64")
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(scores, truth)
    calibrated = iso.predict(scores)
    return Calibration(
        x=[float(v) for v in iso.X_thresholds_],
        y=[float(v) for v in iso.y_thresholds_],
        holdout_rows=int(truth.size),
        ece_raw=expected_calibration_error(truth, scores),
        ece_calibrated=expected_calibration_error(truth, calibrated),
    )


def expected_accuracy(probability: np.ndarray, predicted_positive: np.ndarray) -> float:
    """A row the model calls positive is right with probability p, a negative one with 1 - p."""
    return float(np.where(predicted_positive, probability, 1.0 - probability).mean())


def expected_roc_auc(scores: np.ndarray, probability: np.ndarray) -> float:
    """ROC AUC of the expected ROC curve: rows ranked by raw score, each counting p towards
    the true positives and 1 - p towards the false positives (NannyML's CBPE)."""
    order = np.argsort(-scores, kind="stable")
    ranked_scores = scores[order]
    p = probability[order]
    # One ROC point per distinct score: ties move together.
    last_of_group = np.r_[ranked_scores[1:] != ranked_scores[:-1], True]
    tp = np.cumsum(p)[last_of_group]
    fp = np.cumsum(1.0 - p)[last_of_group]
    if tp[-1] <= 0 or fp[-1] <= 0:
        return float("nan")
    tpr = np.r_[0.0, tp / tp[-1]]
    fpr = np.r_[0.0, fp / fp[-1]]
    return float(np.trapezoid(tpr, fpr))


def estimate(
    scores: np.ndarray, predicted_positive: np.ndarray, calibration: Calibration
) -> dict[str, float]:
    """Expected accuracy and ROC AUC of a window from the champion's raw positive-class
    scores and its own labels (it may not cut at 0.5)."""
    probability = calibration.apply(scores)
    return {
        "accuracy": expected_accuracy(probability, predicted_positive),
        "roc_auc": expected_roc_auc(scores, probability),
    }

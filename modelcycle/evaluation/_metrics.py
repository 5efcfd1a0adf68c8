"""Metrics, per-slice metrics and plots, computed on the holdout rows.

A metric that is undefined on some rows (ROC AUC on a slice with one class) is NaN here and
`null` in JSON, never a made-up number.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve
from sklearn.pipeline import Pipeline

from modelcycle.config import PipelineConfig, higher_is_better
from modelcycle.evaluation._ranking import (
    auc_from_groups,
    average_precision_from_groups,
    ranking_counts,
)

# Metrics computed from predicted probabilities, so the estimator needs predict_proba.
PROBABILITY_METRICS = frozenset(
    {"roc_auc", "average_precision", "brier", "log_loss", "roc_auc_ovr"}
)


@dataclass(frozen=True)
class Outputs:
    """What a model says about some rows: labels, and class probabilities for classifiers."""

    pred: np.ndarray
    proba: np.ndarray | None = None
    classes: np.ndarray | None = None

    def subset(self, mask: np.ndarray) -> Outputs:
        proba = None if self.proba is None else self.proba[mask]
        return Outputs(self.pred[mask], proba, self.classes)


def positive_class(config: PipelineConfig, classes: np.ndarray) -> Any:
    chosen = config.evaluation.positive_class
    return classes[-1] if chosen is None else chosen


def predict_outputs(pipeline: Pipeline, X: pd.DataFrame, config: PipelineConfig) -> Outputs:
    pred = np.asarray(pipeline.predict(X))
    if not config.task.is_classification:
        return Outputs(pred.astype("float64"))
    proba = pipeline.predict_proba(X) if hasattr(pipeline, "predict_proba") else None
    return Outputs(pred, proba, np.asarray(pipeline.classes_))


def _positive_scores(outputs: Outputs, pos: Any) -> np.ndarray:
    if outputs.proba is None or outputs.classes is None:
        raise ValueError("this metric needs predicted probabilities (predict_proba)")
    index = int(np.flatnonzero(outputs.classes == pos)[0])
    return outputs.proba[:, index]


def _counted(metric: str, truth: np.ndarray, predicted: np.ndarray) -> float:
    """F1, precision or recall from the confusion counts, 0 where undefined (scikit-learn's
    `zero_division=0`); its functions re-derive the label set first, a sort of every row."""
    tp = int(np.count_nonzero(truth & predicted))
    fp = int(np.count_nonzero(~truth & predicted))
    fn = int(np.count_nonzero(truth & ~predicted))
    numerator, denominator = {
        "f1": (2 * tp, 2 * tp + fp + fn),
        "precision": (tp, tp + fp),
        "recall": (tp, tp + fn),
    }[metric]
    return numerator / denominator if denominator else 0.0


def _binary(metric: str, y: np.ndarray, outputs: Outputs, pos: Any) -> float:
    truth = y == pos
    if metric in ("f1", "precision", "recall"):
        return _counted(metric, truth, outputs.pred == pos)
    scores = _positive_scores(outputs, pos)
    if metric == "brier":
        return float(np.mean(np.square(truth.astype("float64") - scores)))
    if truth.all() or not truth.any():
        return math.nan  # ranking metrics need both classes
    counts = ranking_counts(truth, scores)
    if metric == "roc_auc":
        return float(auc_from_groups(*counts)[0])
    return float(average_precision_from_groups(*counts)[0])


def _classification(metric: str, y: np.ndarray, outputs: Outputs) -> float:
    if metric == "accuracy":
        return float(skm.accuracy_score(y, outputs.pred))
    if metric == "balanced_accuracy":
        return float(skm.balanced_accuracy_score(y, outputs.pred))
    if metric in ("f1_macro", "f1_weighted"):
        return float(skm.f1_score(y, outputs.pred, average=metric[3:], zero_division=0))
    if outputs.proba is None:
        raise ValueError(f"{metric} needs predicted probabilities (predict_proba)")
    if metric == "log_loss":
        return float(skm.log_loss(y, outputs.proba, labels=outputs.classes))
    if len(np.unique(y)) < 2:
        return math.nan
    return float(skm.roc_auc_score(y, outputs.proba, multi_class="ovr", labels=outputs.classes))


def _regression(metric: str, y: np.ndarray, pred: np.ndarray) -> float:
    if metric == "rmse":
        return float(math.sqrt(skm.mean_squared_error(y, pred)))
    if metric == "mae":
        return float(skm.mean_absolute_error(y, pred))
    if metric == "median_absolute_error":
        return float(skm.median_absolute_error(y, pred))
    if len(y) < 2:
        return math.nan
    return float(skm.r2_score(y, pred))


def metric_value(metric: str, y_true: Any, outputs: Outputs, config: PipelineConfig) -> float:
    y = np.asarray(y_true)
    if len(y) == 0:
        return math.nan
    if not config.task.is_classification:
        return _regression(metric, y.astype("float64"), outputs.pred)
    binary_only = {"roc_auc", "average_precision", "f1", "precision", "recall", "brier"}
    if metric in binary_only:
        assert outputs.classes is not None
        return _binary(metric, y, outputs, positive_class(config, outputs.classes))
    return _classification(metric, y, outputs)


_RANKING = frozenset({"roc_auc", "average_precision", "roc_auc_ovr"})


def undefined_reason(
    metric: str, y_true: Any, outputs: Outputs, config: PipelineConfig
) -> str | None:
    """Why `metric` has no meaning on these rows, or None when it has one.

    scikit-learn answers 0 for a recall without positives (`zero_division`) and a finite r2
    for a constant target; a gate must not judge those numbers, so the cases are named here.
    """
    y = np.asarray(y_true)
    if len(y) == 0:
        return "no rows"
    if not config.task.is_classification:
        values = y.astype("float64")
        if metric == "r2" and (len(values) < 2 or np.all(values == values[0])):
            return f"the target {config.target!r} is constant on these rows"
        return None
    present = np.unique(y)
    if metric in _RANKING and len(present) < 2:
        return f"only one class of {config.target!r} ({present[0]}) on these rows"
    if config.task.value != "binary_classification" or metric not in ("recall", "precision", "f1"):
        return None
    assert outputs.classes is not None
    pos = positive_class(config, outputs.classes)
    positives, said = int((y == pos).sum()), int((outputs.pred == pos).sum())
    if metric == "recall" and positives == 0:
        return f"no rows of the positive class {pos!r}"
    if metric == "precision" and said == 0:
        return f"no row predicted as the positive class {pos!r}"
    if metric == "f1" and positives == 0 and said == 0:
        return f"no row of, or predicted as, the positive class {pos!r}"
    return None


def scorer(config: PipelineConfig) -> Callable[[Pipeline, pd.DataFrame, pd.Series], float]:
    """The primary metric as a CV scorer, signed so that larger is always better."""
    metric = config.evaluation.primary_metric
    sign = 1.0 if config.maximize else -1.0

    def score(estimator: Pipeline, X: pd.DataFrame, y: pd.Series) -> float:
        outputs = predict_outputs(estimator, X, config)
        return sign * metric_value(metric, y, outputs, config)

    return score


def compute_metrics(y_true: Any, outputs: Outputs, config: PipelineConfig) -> dict[str, float]:
    return {m: metric_value(m, y_true, outputs, config) for m in config.metrics}


def slice_metrics(
    holdout: pd.DataFrame, outputs: Outputs, config: PipelineConfig
) -> list[dict[str, Any]]:
    """Metrics per value of each slice column; small slices are reported and marked, not hidden."""
    rows: list[dict[str, Any]] = []
    y = holdout[config.target].to_numpy()
    for column in config.evaluation.slices:
        values = holdout[column].astype("string").fillna("(missing)").to_numpy()
        for value in sorted(set(values.tolist())):
            mask = values == value
            n = int(mask.sum())
            sub = outputs.subset(mask)
            undefined = {m: undefined_reason(m, y[mask], sub, config) for m in config.metrics}
            rows.append(
                {
                    "column": column,
                    "value": value,
                    "rows": n,
                    "enough_rows": n >= config.evaluation.min_slice_rows,
                    **compute_metrics(y[mask], sub, config),
                    "undefined": {m: why for m, why in undefined.items() if why},
                }
            )
    return rows


def compare(challenger: dict[str, float], champion: dict[str, float]) -> dict[str, dict[str, Any]]:
    """Challenger vs champion on the same holdout rows, metric by metric."""
    table = {}
    for metric, value in challenger.items():
        old = champion.get(metric, math.nan)
        table[metric] = {
            "challenger": value,
            "champion": old,
            "difference": value - old,
            "higher_is_better": higher_is_better(metric),
        }
    return table


# --- plots --------------------------------------------------------------------------------


def _figure(title: str) -> tuple[Figure, Any]:
    """A bare Figure, not pyplot: `savefig` renders it with Agg, so no backend is chosen for the
    whole process and nothing happens at import."""
    fig = Figure(figsize=(5.5, 4.5))
    ax = fig.add_subplot()
    ax.set_title(title)
    return fig, ax


def _roc_pr(truth: np.ndarray, scores: np.ndarray) -> dict[str, Figure]:
    fpr, tpr, _ = skm.roc_curve(truth, scores)
    roc, ax = _figure(f"ROC curve (AUC {skm.roc_auc_score(truth, scores):.3f})")
    ax.plot(fpr, tpr)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    precision, recall, _ = skm.precision_recall_curve(truth, scores)
    pr, ax = _figure(f"Precision-recall (AP {skm.average_precision_score(truth, scores):.3f})")
    ax.plot(recall, precision)
    ax.axhline(truth.mean(), linestyle="--", color="grey")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    return {"roc.png": roc, "precision_recall.png": pr}


def _calibration(truth: np.ndarray, scores: np.ndarray) -> Figure:
    observed, predicted = calibration_curve(truth, scores, n_bins=10, strategy="quantile")
    fig, ax = _figure("Calibration (10 quantile bins)")
    ax.plot(predicted, observed, marker="o")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed frequency")
    return fig


def _confusion(y: np.ndarray, pred: np.ndarray, classes: np.ndarray) -> Figure:
    matrix = skm.confusion_matrix(y, pred, labels=classes)
    fig, ax = _figure("Confusion matrix (holdout)")
    ax.imshow(matrix, cmap="Blues")
    labels = [str(c) for c in classes]
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center")
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    fig.tight_layout()
    return fig


def _regression_plots(y: np.ndarray, pred: np.ndarray) -> dict[str, Figure]:
    residuals, ax = _figure("Residuals")
    ax.scatter(pred, y - pred, s=4, alpha=0.4)
    ax.axhline(0, color="grey", linestyle="--")
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual - predicted")
    scatter, ax = _figure("Predicted vs actual")
    ax.scatter(y, pred, s=4, alpha=0.4)
    low, high = float(min(y.min(), pred.min())), float(max(y.max(), pred.max()))
    ax.plot([low, high], [low, high], color="grey", linestyle="--")
    ax.set_xlabel("actual")
    ax.set_ylabel("predicted")
    return {"residuals.png": residuals, "predicted_vs_actual.png": scatter}


def plots(y_true: Any, outputs: Outputs, config: PipelineConfig) -> dict[str, Figure]:
    """File name -> figure for the task type."""
    y = np.asarray(y_true)
    if not config.task.is_classification:
        return _regression_plots(y.astype("float64"), outputs.pred)
    assert outputs.classes is not None
    figures = {"confusion_matrix.png": _confusion(y, outputs.pred, outputs.classes)}
    if outputs.proba is not None and config.task.value == "binary_classification":
        pos = positive_class(config, outputs.classes)
        truth, scores = y == pos, _positive_scores(outputs, pos)
        if truth.any() and not truth.all():
            figures.update(_roc_pr(truth, scores))
            figures["calibration.png"] = _calibration(truth, scores)
    return figures

"""Paired bootstrap of holdout metrics, vectorised over resamples.

Each resample is stored as a row of counts (how often each holdout row was drawn), so a
metric over all resamples is a matrix product instead of a Python loop: for ROC AUC the
rank statistic is computed from per-score-group counts, ties counted half, as scikit-learn
does. Challenger and champion see the same resamples, which is what makes the test paired.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from modelcycle.config import PipelineConfig, higher_is_better
from modelcycle.evaluation import (
    Outputs,
    auc_from_groups,
    average_precision_from_groups,
    metric_value,
    positive_class,
    score_groups,
)

# Cells (resamples x rows) held in memory at once.
_CHUNK_CELLS = 2_000_000
_LOG_EPS = float(np.finfo(np.float64).eps)


@dataclass(frozen=True)
class PairedInterval:
    """The confidence interval of (challenger - champion) on the same holdout rows."""

    metric: str
    challenger: float
    champion: float
    difference: float
    low: float
    high: float
    confidence: float
    resamples: int
    valid_resamples: int
    seed: int
    rows: int
    higher_is_better: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rates(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), 0.0)


def _groups_from_weights(
    weights: np.ndarray, truth: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    group, count = score_groups(scores)
    pos = np.zeros((weights.shape[0], count))
    neg = np.zeros((weights.shape[0], count))
    np.add.at(pos.T, group[truth], weights[:, truth].T)
    np.add.at(neg.T, group[~truth], weights[:, ~truth].T)
    return pos, neg


def weighted_auc(weights: np.ndarray, truth: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """ROC AUC for every row of `weights` (resamples x rows) at once; NaN without both classes."""
    return auc_from_groups(*_groups_from_weights(weights, truth, scores))


def weighted_average_precision(
    weights: np.ndarray, truth: np.ndarray, scores: np.ndarray
) -> np.ndarray:
    """Average precision for every row of `weights` at once; NaN without positives."""
    return average_precision_from_groups(*_groups_from_weights(weights, truth, scores))


def _resampled_groups(
    index: np.ndarray, truth: np.ndarray, group: np.ndarray, count: int
) -> tuple[np.ndarray, np.ndarray]:
    """Positive and negative rows drawn per (resample, score group), straight from the drawn
    indices: two bincounts, no (resamples x rows) weight matrix and no sorting per resample."""
    size = index.shape[0]
    keys = (group[index] + (np.arange(size) * count)[:, None]).ravel()
    total = np.bincount(keys, minlength=size * count).reshape(size, count)
    pos = np.bincount(
        keys, weights=truth.astype("float64")[index].ravel(), minlength=size * count
    ).reshape(size, count)
    return pos, total - pos


def _proba_of(outputs: Outputs, label: Any) -> np.ndarray:
    assert outputs.proba is not None and outputs.classes is not None
    return outputs.proba[:, int(np.flatnonzero(outputs.classes == label)[0])]


def _vectorised(
    metric: str, y: np.ndarray, outputs: Outputs, config: PipelineConfig
) -> Callable[[np.ndarray], np.ndarray] | None:
    """weights (resamples x rows) -> metric per resample, or None if only the loop can do it."""
    if not config.task.is_classification:
        y = y.astype("float64")
        error = outputs.pred - y
        if metric == "rmse":
            return lambda w: np.sqrt(w @ error**2 / w.sum(axis=1))
        if metric == "mae":
            return lambda w: w @ np.abs(error) / w.sum(axis=1)
        if metric == "r2":

            def r2(w: np.ndarray) -> np.ndarray:
                total = w.sum(axis=1)
                mean = w @ y / total
                sst = w @ y**2 - total * mean**2
                with np.errstate(invalid="ignore", divide="ignore"):
                    return np.where(sst > 0, 1 - (w @ error**2) / np.where(sst > 0, sst, 1), np.nan)

            return r2
        return None
    correct = (outputs.pred == y).astype("float64")
    if metric == "accuracy":
        return lambda w: w @ correct / w.sum(axis=1)
    if metric == "balanced_accuracy":
        masks = [y == c for c in np.unique(y)]

        def balanced(w: np.ndarray) -> np.ndarray:
            recalls = [_rates(w[:, m] @ correct[m], w[:, m].sum(axis=1)) for m in masks]
            present = [w[:, m].sum(axis=1) > 0 for m in masks]
            return np.sum(recalls, axis=0) / np.maximum(np.sum(present, axis=0), 1)

        return balanced
    if metric == "log_loss" and outputs.proba is not None:
        index = {c: i for i, c in enumerate(outputs.classes)}
        p_true = outputs.proba[np.arange(len(y)), [index[v] for v in y]]
        loss = -np.log(np.clip(p_true, _LOG_EPS, 1.0))
        return lambda w: w @ loss / w.sum(axis=1)
    if config.task.value != "binary_classification":
        return None
    assert outputs.classes is not None
    pos = positive_class(config, outputs.classes)
    truth = y == pos
    said = outputs.pred == pos
    tp, fp, fn = (truth & said).astype(float), (~truth & said).astype(float), (truth & ~said)
    fn = fn.astype(float)
    if metric == "precision":
        return lambda w: _rates(w @ tp, w @ (tp + fp))
    if metric == "recall":
        return lambda w: _rates(w @ tp, w @ (tp + fn))
    if metric == "f1":
        return lambda w: _rates(2 * (w @ tp), w @ (2 * tp + fp + fn))
    if outputs.proba is None:
        return None
    scores = _proba_of(outputs, pos)
    if metric == "brier":
        squared = (scores - truth) ** 2
        return lambda w: w @ squared / w.sum(axis=1)
    return None


_RANKED = {"roc_auc": auc_from_groups, "average_precision": average_precision_from_groups}


def _ranked_inputs(
    metric: str, y: np.ndarray, outputs: Outputs, config: PipelineConfig
) -> tuple[np.ndarray, np.ndarray, int] | None:
    """(truth, score group per row, number of groups) for a binary ranking metric."""
    if (
        metric not in _RANKED
        or config.task.value != "binary_classification"
        or outputs.proba is None
        or outputs.classes is None
    ):
        return None
    pos = positive_class(config, outputs.classes)
    return (y == pos, *score_groups(_proba_of(outputs, pos)))


def bootstrap_metrics(
    y_true: Any,
    outputs: list[Outputs],
    metrics: list[str],
    config: PipelineConfig,
    resamples: int,
    seed: int,
) -> dict[str, np.ndarray]:
    """metric -> array (len(outputs) x resamples), every model scored on the same resamples."""
    y = np.asarray(y_true)
    n = len(y)
    if n == 0:
        raise ValueError("bootstrap needs at least one holdout row")
    rng = np.random.default_rng(seed)
    pairs = [(m, i, o) for m in metrics for i, o in enumerate(outputs)]
    ranked = {(m, i): _ranked_inputs(m, y, o, config) for m, i, o in pairs}
    linear = {(m, i): _vectorised(m, y, o, config) for m, i, o in pairs if not ranked[(m, i)]}
    result = {m: np.empty((len(outputs), resamples)) for m in metrics}
    chunk = max(1, _CHUNK_CELLS // n)
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        index = rng.integers(0, n, size=(size, n))
        weights = None
        groups: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # per model: AUC and AP share
        for metric, i, out in pairs:
            if (inputs := ranked[(metric, i)]) is not None:
                if i not in groups:
                    groups[i] = _resampled_groups(index, *inputs)
                values = _RANKED[metric](*groups[i])
            elif (compute := linear[(metric, i)]) is not None:
                if weights is None:
                    offsets = index + (np.arange(size) * n)[:, None]
                    counts = np.bincount(offsets.ravel(), minlength=size * n)
                    weights = counts.reshape(size, n).astype("float64")
                values = compute(weights)
            else:  # metrics without a vectorised form: score each resample
                values = np.array(
                    [metric_value(metric, y[ix], out.subset(ix), config) for ix in index]
                )
            result[metric][i, start : start + size] = values
    return result


def percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return math.nan, math.nan
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(finite, [tail, 1.0 - tail])
    return float(low), float(high)


def metric_intervals(
    y_true: Any,
    outputs: Outputs,
    config: PipelineConfig,
    resamples: int,
    confidence: float,
    seed: int,
) -> dict[str, dict[str, float]]:
    """Percentile interval of every configured metric for one model (for the card)."""
    draws = bootstrap_metrics(y_true, [outputs], config.metrics, config, resamples, seed)
    intervals = {}
    for metric, values in draws.items():
        low, high = percentile_interval(values[0], confidence)
        intervals[metric] = {"low": low, "high": high}
    return intervals


def paired_difference(
    y_true: Any,
    challenger: Outputs,
    champion: Outputs,
    metric: str,
    config: PipelineConfig,
    resamples: int,
    confidence: float,
    seed: int,
) -> PairedInterval:
    """Interval of (challenger - champion) by resampling holdout rows for both at once."""
    y = np.asarray(y_true)
    draws = bootstrap_metrics(y, [challenger, champion], [metric], config, resamples, seed)[metric]
    differences = draws[0] - draws[1]
    low, high = percentile_interval(differences, confidence)
    new = metric_value(metric, y, challenger, config)
    old = metric_value(metric, y, champion, config)
    return PairedInterval(
        metric=metric,
        challenger=new,
        champion=old,
        difference=new - old,
        low=low,
        high=high,
        confidence=confidence,
        resamples=resamples,
        valid_resamples=int(np.isfinite(differences).sum()),
        seed=seed,
        rows=len(y),
        higher_is_better=(
            config.maximize
            if metric == config.evaluation.primary_metric
            else higher_is_better(metric)
        ),
    )

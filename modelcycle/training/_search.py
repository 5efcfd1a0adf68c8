"""Hyperparameter search split into independent candidates, so any executor can run them.

The same candidates, folds, scores, ranking and refit as scikit-learn's GridSearchCV /
RandomizedSearchCV (tests compare the model bytes), but each candidate is one call that a
Prefect task runner (threads, Dask) can run anywhere, or `search` runs one after another. The
best candidate is refitted on all training rows here, in one place, so the model file is the
same whichever runner scored it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import KFold, ParameterGrid, ParameterSampler, StratifiedKFold
from sklearn.pipeline import Pipeline

from modelcycle.config import PipelineConfig
from modelcycle.errors import EstimatorError
from modelcycle.evaluation import scorer
from modelcycle.training._pipeline import MODEL_STEP, TrainResult, build_pipeline
from modelcycle.utils import thread_limit

Split = tuple[np.ndarray, np.ndarray]


def candidates(config: PipelineConfig) -> list[dict[str, Any]]:
    """The parameter sets to try, in scikit-learn's order (a seeded sample when n_iter is set)."""
    spec = config.model.search
    if spec is None:
        raise EstimatorError("model.search: no search is configured")
    if spec.n_iter is not None:
        sampled = ParameterSampler(spec.space, n_iter=spec.n_iter, random_state=config.split.seed)
        return [dict(p) for p in sampled]
    return [dict(p) for p in ParameterGrid(spec.space)]


def _cv(config: PipelineConfig) -> KFold | StratifiedKFold:
    """Shuffled with the split seed, stratified for classification, as GridSearchCV's `cv`."""
    spec = config.model.search
    n_splits = spec.cv if spec else 3
    if config.task.is_classification:
        return StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=config.split.seed)
    return KFold(n_splits=n_splits, shuffle=True, random_state=config.split.seed)


def folds(config: PipelineConfig, X: pd.DataFrame, y: pd.Series) -> list[Split]:
    """The cross-validation folds, fixed once so every candidate sees the same rows."""
    try:
        return list(_cv(config).split(X, y))
    except ValueError as exc:  # e.g. more folds than rows of the rarest class
        raise EstimatorError(f"model.search.cv: {exc}") from None


def _with_params(config: PipelineConfig, params: dict[str, Any]) -> Pipeline:
    pipeline = clone(build_pipeline(config))
    return pipeline.set_params(**{f"{MODEL_STEP}__{k}": v for k, v in params.items()})


def _fit_kwargs(sample_weight: np.ndarray | None, rows: np.ndarray | None = None) -> dict:
    if sample_weight is None:
        return {}
    weights = sample_weight if rows is None else sample_weight[rows]
    return {f"{MODEL_STEP}__sample_weight": weights}


def score_candidate(
    config: PipelineConfig,
    X: pd.DataFrame,
    y: pd.Series,
    params: dict[str, Any],
    splits: list[Split],
    threads: int | None = None,
    sample_weight: np.ndarray | None = None,
) -> list[float]:
    """The primary metric on each fold (signed: larger is better), fitting on the other folds."""
    score = scorer(config)
    scores = []
    with thread_limit(threads):
        for train_rows, test_rows in splits:
            pipeline = _with_params(config, params)
            try:
                pipeline.fit(
                    X.iloc[train_rows], y.iloc[train_rows], **_fit_kwargs(sample_weight, train_rows)
                )
            except ValueError as exc:  # sklearn's InvalidParameterError is a ValueError
                raise EstimatorError(
                    f"model.search: fitting {config.model.estimator} with {params} failed: {exc}"
                ) from None
            scores.append(float(score(pipeline, X.iloc[test_rows], y.iloc[test_rows])))
    return scores


@dataclass(frozen=True)
class SearchOutcome:
    best_params: dict[str, Any]
    table: pd.DataFrame


def rank(
    config: PipelineConfig, tried: list[dict[str, Any]], scores: list[list[float]]
) -> SearchOutcome:
    """Best = highest mean fold score; ties go to the earlier candidate, as in scikit-learn."""
    if not tried or len(tried) != len(scores):
        raise EstimatorError("model.search: every candidate needs its fold scores")
    matrix = np.asarray(scores, dtype="float64")
    means = matrix.mean(axis=1)
    order = np.argsort(-means, kind="stable")
    ranks = np.empty(len(means), dtype=int)
    # Equal means share the lower rank ("min" ranking), like GridSearchCV's rank_test_score.
    for position, index in enumerate(order):
        previous = order[position - 1] if position else None
        tied = previous is not None and means[index] == means[previous]
        ranks[index] = ranks[previous] if tied else position + 1
    sign = 1.0 if config.maximize else -1.0
    table = pd.DataFrame(
        {
            "params": tried,
            "mean_score": sign * means,
            "std_score": matrix.std(axis=1),
            "rank": ranks,
        }
    ).sort_values("rank", kind="stable")
    best = dict(tried[int(np.argmax(means))])
    return SearchOutcome(best, table)


def search(
    config: PipelineConfig,
    X: pd.DataFrame,
    y: pd.Series,
    threads: int | None = None,
    sample_weight: np.ndarray | None = None,
) -> SearchOutcome:
    """Every candidate scored one after another in this process, for callers without a task
    runner; the flow scores the same candidates on its runner (tasks/search.py)."""
    tried = candidates(config)
    splits = folds(config, X, y)
    scores = [
        score_candidate(config, X, y, params, splits, threads, sample_weight) for params in tried
    ]
    return rank(config, tried, scores)


def refit(
    config: PipelineConfig,
    X: pd.DataFrame,
    y: pd.Series,
    outcome: SearchOutcome,
    threads: int | None = None,
    sample_weight: np.ndarray | None = None,
) -> TrainResult:
    """The chosen parameters fitted on all training rows: the model that is registered."""
    pipeline = _with_params(config, outcome.best_params)
    with thread_limit(threads):
        try:
            pipeline.fit(X, y, **_fit_kwargs(sample_weight))
        except ValueError as exc:
            raise EstimatorError(
                f"model.search: refitting {config.model.estimator} failed: {exc}"
            ) from None
    return TrainResult(pipeline, {**config.model.params, **outcome.best_params}, outcome.table)

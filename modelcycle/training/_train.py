"""Fitting the pipeline: from scratch (through the candidate search when one is configured) or
continuing the champion.

`train` runs the search's candidates one after another in this process: the path for callers
without a task runner. The flow scores the same candidates on a Prefect task runner and refits
through the same `refit`, so both give the same model file.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, is_classifier
from sklearn.pipeline import Pipeline

from modelcycle.config import PipelineConfig
from modelcycle.errors import EstimatorError
from modelcycle.training._pipeline import MODEL_STEP, TrainResult, build_pipeline
from modelcycle.training._search import refit, search
from modelcycle.utils import thread_limit


def train(
    config: PipelineConfig,
    X: pd.DataFrame,
    y: pd.Series,
    threads: int | None = None,
    sample_weight: np.ndarray | None = None,
) -> TrainResult:
    """Fit from scratch, through the configured search when there is one; deterministic per seed."""
    with thread_limit(threads):
        if config.model.search is None:
            return _fit(config, X, y, sample_weight)
        outcome = search(config, X, y, threads, sample_weight)
        return refit(config, X, y, outcome, threads, sample_weight)


def _fit(
    config: PipelineConfig, X: pd.DataFrame, y: pd.Series, sample_weight: np.ndarray | None
) -> TrainResult:
    pipeline = build_pipeline(config)
    weights = {} if sample_weight is None else {f"{MODEL_STEP}__sample_weight": sample_weight}
    try:
        pipeline.fit(X, y, **weights)
    except ValueError as exc:
        raise EstimatorError(f"model: fitting {config.model.estimator} failed: {exc}") from None
    return TrainResult(pipeline, dict(config.model.params), None)


def supports_fine_tune(estimator: BaseEstimator) -> bool:
    return hasattr(estimator, "partial_fit") or "warm_start" in estimator.get_params()


def fine_tune(
    champion: Pipeline,
    config: PipelineConfig,
    X: pd.DataFrame,
    y: pd.Series,
    threads: int | None = None,
    sample_weight: np.ndarray | None = None,
) -> Pipeline:
    """Continue the champion's estimator on new rows; its fitted preprocessing is kept as it is."""
    with thread_limit(threads):
        return _fine_tune(champion, config, X, y, sample_weight)


def _fine_tune(
    champion: Pipeline,
    config: PipelineConfig,
    X: pd.DataFrame,
    y: pd.Series,
    sample_weight: np.ndarray | None,
) -> Pipeline:
    tuned = copy.deepcopy(champion)
    preprocess, estimator = tuned[:-1], tuned.steps[-1][1]
    if not supports_fine_tune(estimator):
        raise EstimatorError(
            f"fine-tune: {type(estimator).__name__} supports neither warm_start nor partial_fit; "
            "train from scratch instead"
        )
    features = preprocess.transform(X)
    if hasattr(estimator, "partial_fit"):
        kwargs = {"classes": estimator.classes_} if is_classifier(estimator) else {}
        if sample_weight is not None:
            kwargs["sample_weight"] = sample_weight
        estimator.partial_fit(features, y, **kwargs)
    else:
        estimator.set_params(
            warm_start=True, **_grown(estimator, config.model.fine_tune.extra_iterations)
        )
        weights = {} if sample_weight is None else {"sample_weight": sample_weight}
        estimator.fit(features, y, **weights)
    return tuned


def _grown(estimator: BaseEstimator, extra: int) -> dict[str, int]:
    """warm_start only adds work when the iteration budget grows."""
    params = estimator.get_params()
    for name in ("n_estimators", "max_iter"):
        if name in params and isinstance(params[name], int):
            return {name: params[name] + extra}
    return {}

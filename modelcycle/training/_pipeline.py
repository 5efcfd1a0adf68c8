"""One scikit-learn Pipeline from raw columns to predictions, built from the config.

The fitted preprocessing and the estimator travel together as one object, so serving and
monitoring can never pair a model with the wrong preprocessing.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, is_classifier, is_regressor
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from modelcycle.config import PipelineConfig
from modelcycle.data import group_labels
from modelcycle.errors import EstimatorError
from modelcycle.evaluation import PROBABILITY_METRICS

MODEL_STEP = "model"
CATEGORICAL_FILL = "__missing__"


def resolve_estimator(path: str, config: PipelineConfig | None = None) -> type[BaseEstimator]:
    """Import the configured class and make sure it can do the configured task."""
    module_name, _, class_name = path.rpartition(".")
    if not module_name:
        raise EstimatorError(
            f"model.estimator: {path!r} is not an import path like 'pkg.module.Class'"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EstimatorError(f"model.estimator: cannot import {path!r}: {exc}") from None
    estimator = getattr(module, class_name, None)
    if estimator is None:
        raise EstimatorError(f"model.estimator: module {module_name!r} has no {class_name!r}")
    if not (inspect.isclass(estimator) and issubclass(estimator, BaseEstimator)):
        raise EstimatorError(f"model.estimator: {path!r} is not a scikit-learn estimator class")
    if config is not None:
        _check_task(estimator, path, config)
    return estimator


def _default_instance(estimator: type[BaseEstimator]) -> BaseEstimator | None:
    """An instance with default parameters, or None when the class needs arguments."""
    try:
        return estimator()
    except TypeError:
        return None


def _check_task(estimator: type[BaseEstimator], path: str, config: PipelineConfig) -> None:
    instance = _default_instance(estimator)
    if instance is None:
        return  # needs arguments; fitting will tell
    if config.task.is_classification and not is_classifier(instance):
        raise EstimatorError(f"model.estimator: {path!r} is not a classifier (task {config.task})")
    if not config.task.is_classification and not is_regressor(instance):
        raise EstimatorError(f"model.estimator: {path!r} is not a regressor (task {config.task})")


def _preprocessing(config: PipelineConfig) -> ColumnTransformer:
    fill = config.cleaning.impute_numeric
    numeric = Pipeline(
        [
            (
                "impute",
                SimpleImputer(strategy="constant", fill_value=0.0)
                if fill == "zero"
                else SimpleImputer(strategy=fill),
            ),
            ("scale", StandardScaler()),
        ]
    )
    categorical = Pipeline(
        [
            (
                "impute",
                SimpleImputer(strategy="constant", fill_value=CATEGORICAL_FILL)
                if config.cleaning.impute_categorical == "constant"
                else SimpleImputer(strategy="most_frequent"),
            ),
            ("encode", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]
    )
    return ColumnTransformer(
        [
            ("numeric", numeric, list(config.features.numeric)),
            ("categorical", categorical, list(config.features.categorical)),
        ],
        remainder="drop",
        verbose_feature_names_out=False,
    )


def estimator_params(config: PipelineConfig, estimator: type[BaseEstimator]) -> dict[str, Any]:
    """The configured parameters, plus the split seed as random_state if the estimator has one."""
    params = dict(config.model.params)
    instance = _default_instance(estimator)
    accepted = instance.get_params() if instance is not None else {}
    unknown = sorted(set(params) - set(accepted)) if accepted else []
    if unknown:
        raise EstimatorError(
            f"model.params: {config.model.estimator} has no parameter(s) {unknown}"
        )
    if "random_state" in accepted and params.get("random_state") is None:
        params["random_state"] = config.split.seed
    return params


def build_pipeline(config: PipelineConfig) -> Pipeline:
    """The unfitted pipeline; refused here if the estimator cannot serve the configured metrics."""
    estimator = resolve_estimator(config.model.estimator, config)
    try:
        model = estimator(**estimator_params(config, estimator))
    except (TypeError, ValueError) as exc:
        raise EstimatorError(f"model.params: {config.model.estimator}: {exc}") from None
    needs_proba = sorted(PROBABILITY_METRICS.intersection(config.metrics))
    if needs_proba and not hasattr(model, "predict_proba"):
        raise EstimatorError(
            f"model.estimator: {config.model.estimator} has no predict_proba, which the "
            f"metrics {needs_proba} need; choose another estimator or other metrics"
        )
    unknown = sorted(
        set(config.model.search.space if config.model.search else ()) - set(model.get_params())
    )
    if unknown:
        raise EstimatorError(
            f"model.search.space: {config.model.estimator} has no parameter(s) {unknown}"
        )
    return Pipeline([("preprocess", _preprocessing(config)), (MODEL_STEP, model)])


@dataclass(frozen=True)
class TrainResult:
    pipeline: Pipeline
    best_params: dict[str, Any]
    search_results: pd.DataFrame | None


def sample_weights(table: pd.DataFrame, config: PipelineConfig) -> np.ndarray | None:
    """Weights that give every class and/or every sensitive group the same total weight.

    None when balancing is off. Weights multiply across the balanced columns and are scaled to
    mean 1, so the estimator's regularisation sees the same total weight as without them.
    """
    balance = config.model.balance
    if not balance.enabled:
        return None
    columns = [config.target] if balance.classes else []
    if balance.sensitive_groups:
        columns += list(config.sensitive_columns)
    weights = np.ones(len(table))
    for column in columns:
        labels = pd.Series(group_labels(table[column]), index=table.index)
        counts = labels.map(labels.value_counts()).to_numpy(dtype="float64")
        weights *= len(labels) / (labels.nunique() * counts)
    return weights / weights.mean()

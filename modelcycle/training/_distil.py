"""Distillation: a smaller student trained to reproduce the champion (the teacher).

Classifiers use the soft-label trick: every row is repeated once per class, labelled with
that class and weighted by the teacher's probability of it, so any scikit-learn classifier
that takes sample weights and minimises log loss (gradient boosting, logistic regression,
trees) learns the teacher's probabilities, and the student is an ordinary classifier with the
same `classes_`, served and loaded (skops, trusted types) like any other. Regressors are fitted
on the teacher's predictions. The student keeps the teacher's fitted preprocessing, so both
see the same features.

Synthetic neighbours (perturbed copies of the training rows) show the student the teacher's
answers around the data, not only on it: numeric cells get Gaussian jitter scaled by the
column's standard deviation, and a share of categorical cells is redrawn from the column's
training distribution.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, is_classifier
from sklearn.pipeline import Pipeline

from modelcycle.config import PipelineConfig
from modelcycle.errors import EstimatorError
from modelcycle.training._pipeline import MODEL_STEP, resolve_estimator
from modelcycle.utils import thread_limit

DEFAULT_STUDENTS = {
    True: "sklearn.ensemble.HistGradientBoostingClassifier",
    False: "sklearn.ensemble.HistGradientBoostingRegressor",
}
DEFAULT_STUDENT_PARAMS: dict[str, Any] = {
    "max_iter": 50,
    "max_leaf_nodes": 15,
    # On by default above 10,000 rows, where it would hold out duplicates of fitted rows.
    "early_stopping": False,
}


@dataclass(frozen=True)
class DistilResult:
    pipeline: Pipeline
    student: str
    params: dict[str, Any]
    rows: dict[str, int]  # training rows, synthetic neighbours, weighted rows fitted


def student_spec(config: PipelineConfig) -> tuple[str, dict[str, Any]]:
    """The student's import path and parameters: the configured ones, else the default pair
    (the default parameters only ever go with the default student)."""
    spec = config.model.distillation
    default = DEFAULT_STUDENTS[config.task.is_classification]
    student = spec.student or default
    if spec.params is not None:
        return student, dict(spec.params)
    return student, dict(DEFAULT_STUDENT_PARAMS) if student == default else {}


def neighbours(X: pd.DataFrame, config: PipelineConfig) -> pd.DataFrame:
    """`distillation.neighbours` perturbed copies of every row (none when it is 0)."""
    spec = config.model.distillation
    if spec.neighbours == 0 or X.empty:
        return X.iloc[:0]
    rng = np.random.default_rng(spec.seed)
    copies = pd.concat([X] * spec.neighbours, ignore_index=True)
    out: dict[str, Any] = {}
    for column in X.columns:
        values = copies[column]
        if column in config.features.numeric:
            numeric = pd.to_numeric(values, errors="coerce").astype("float64")
            std = float(np.nanstd(pd.to_numeric(X[column], errors="coerce")))
            noise = rng.normal(0.0, spec.jitter * std if np.isfinite(std) else 0.0, len(copies))
            out[column] = numeric + noise  # missing stays missing (NaN + noise)
        else:
            observed = X[column].dropna()
            redraw = rng.random(len(copies)) < spec.resample_share
            if observed.empty or not redraw.any():
                out[column] = values
                continue
            drawn = observed.sample(
                n=int(redraw.sum()), replace=True, random_state=rng.integers(2**31)
            ).to_numpy()
            column_values = values.astype(object).to_numpy(copy=True)
            column_values[redraw] = drawn
            out[column] = pd.Series(column_values, index=copies.index).astype(values.dtype)
    return pd.DataFrame(out, index=copies.index)[list(X.columns)]


def _student(config: PipelineConfig) -> tuple[BaseEstimator, str, dict[str, Any]]:
    name, params = student_spec(config)
    estimator = resolve_estimator(name, config=config)
    accepted = estimator().get_params() if _constructible(estimator) else {}
    if accepted and "random_state" in accepted and params.get("random_state") is None:
        params["random_state"] = config.split.seed
    try:
        model = estimator(**params)
    except (TypeError, ValueError) as exc:
        raise EstimatorError(f"model.distillation.params: {name}: {exc}") from None
    if config.task.is_classification and not hasattr(model, "predict_proba"):
        raise EstimatorError(
            f"model.distillation.student: {name} has no predict_proba, which learning the "
            "teacher's probabilities needs"
        )
    return model, name, params


def _constructible(estimator: type[BaseEstimator]) -> bool:
    try:
        estimator()
    except TypeError:
        return False
    return True


def distil(
    teacher: Pipeline, config: PipelineConfig, X: pd.DataFrame, threads: int | None = None
) -> DistilResult:
    """Fit the student on the teacher's answers over `X` plus its synthetic neighbours."""
    student, name, params = _student(config)
    with thread_limit(threads):
        rows = pd.concat([X, neighbours(X, config)], ignore_index=True)
        preprocess = copy.deepcopy(teacher[:-1])
        features = preprocess.transform(rows)
        teacher_model = teacher.steps[-1][1]
        try:
            fitted = _fit_student(student, teacher_model, features)
        except ValueError as exc:
            raise EstimatorError(f"model.distillation: fitting {name} failed: {exc}") from None
    pipeline = Pipeline([*preprocess.steps, (MODEL_STEP, student)])
    counts = {"train": len(X), "neighbours": len(rows) - len(X), "fitted": fitted}
    return DistilResult(pipeline, name, params, counts)


def _fit_student(student: BaseEstimator, teacher: BaseEstimator, features: Any) -> int:
    """Returns how many (weighted) rows the student was fitted on."""
    if not is_classifier(teacher):
        student.fit(features, np.asarray(teacher.predict(features), dtype="float64"))
        return features.shape[0]
    proba = np.asarray(teacher.predict_proba(features), dtype="float64")
    classes = np.asarray(teacher.classes_)
    n, k = proba.shape
    stacked = np.concatenate([features] * k) if not hasattr(features, "tocsr") else None
    if stacked is None:
        from scipy.sparse import vstack

        stacked = vstack([features] * k).tocsr()
    labels = np.repeat(classes, n)
    weights = proba.T.reshape(-1)
    keep = weights > 0  # a zero weight teaches nothing and some estimators refuse it
    student.fit(stacked[keep], labels[keep], sample_weight=weights[keep])
    if list(np.asarray(student.classes_)) != list(classes):
        raise ValueError(
            f"the student learned classes {list(student.classes_)}, the teacher has "
            f"{list(classes)} (a class the teacher never gives any probability)"
        )
    return int(keep.sum())

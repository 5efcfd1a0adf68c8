"""The numpy fast path against the fitted pipeline it replaces: same answers on real rows with
missing values and unseen categories, alone and in any batch, for every preprocessing the
training code builds; refused (with the reason) for what it does not reproduce."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import small_config_dict
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, StandardScaler

from modelcycle import data
from modelcycle.config import PipelineConfig, parse_config
from modelcycle.serving import (
    PARITY_TOLERANCE,
    build_fast_predictor,
    build_schema,
    check_parity,
    parity_rows,
)
from modelcycle.training import train

NUMERIC = ["age", "prestg10", "childs"]
CATEGORICAL = ["occrecode", "wrkstat", "educcat", "maritalcat"]


@dataclass
class Fitted:
    config: PipelineConfig
    pipeline: Any
    sample: pd.DataFrame  # training rows (what the run's reference sample holds)
    holdout: pd.DataFrame


def _fit(small_parquet: Path, **changes: Any) -> Fitted:
    raw = small_config_dict(small_parquet)
    raw["model"]["params"]["max_iter"] = 30
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        raw[section][key] = value
    config = parse_config(raw)
    table = data.load_table(config, Path(config.data.source))
    cleaned, _ = data.clean(table, config)
    train_rows, holdout = data.split(cleaned, config)
    X, y = data.features_and_target(train_rows, config)
    pipeline = train(config, X, y, threads=1).pipeline
    return Fitted(config, pipeline, X.head(500), holdout[config.features.all])


@pytest.fixture(scope="module")
def demo(small_parquet: Path) -> Fitted:
    return _fit(small_parquet)


def _edge_rows(holdout: pd.DataFrame, n: int = 300) -> pd.DataFrame:
    """Holdout rows, with missing values and categories nobody trained on written in."""
    rows = holdout.head(n).copy().astype(object)
    rng = np.random.default_rng(0)
    for column in rows.columns:
        hit = rng.random(len(rows)) < 0.15
        rows.loc[hit, column] = math.nan
    for column in CATEGORICAL:
        hit = rng.random(len(rows)) < 0.1
        rows.loc[hit, column] = "never seen in training"
    rows.loc[rows.index[0], :] = math.nan  # a row with nothing known
    return rows


class _Batch:
    """Columns as the request schema hands them to a model: floats and text, NaN missing."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.features = {
            c: [_cell(v, c in NUMERIC) for v in frame[c].tolist()] for c in frame.columns
        }
        self.size = len(frame)


def _cell(value: Any, numeric: bool) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return math.nan
    return float(value) if numeric else str(value)


def _frame(batch: _Batch) -> pd.DataFrame:
    """What the pipeline itself is given for the same rows (as the service built it before)."""
    out = {}
    for name, values in batch.features.items():
        if name in NUMERIC:
            out[name] = np.asarray(values, dtype="float64")
        else:
            column = np.empty(len(values), dtype=object)
            column[:] = values
            out[name] = column
    return pd.DataFrame(out)


def _build(fitted: Fitted, pipeline: Any = None, classifier: bool = True):
    return build_fast_predictor(
        pipeline if pipeline is not None else fitted.pipeline,
        NUMERIC,
        CATEGORICAL,
        fitted.sample,
        classifier,
    )


def _assert_same(
    fast: Any, pipeline: Any, rows: pd.DataFrame, proba: bool = True, exact: bool = True
) -> None:
    """The pipeline's answers; batch-invariant to the last bit for trees, and within the
    tolerance for a matrix product (BLAS blocks it differently by batch size, pipeline too)."""
    whole = _Batch(rows)
    truth = _frame(whole)
    expected = pipeline.predict_proba(truth) if proba else pipeline.predict(truth)
    got = fast.predict_values([whole])
    assert got.shape == np.shape(expected)
    assert np.max(np.abs(got - expected)) <= PARITY_TOLERANCE
    if proba:
        assert np.array_equal(got.argmax(axis=1), np.asarray(expected).argmax(axis=1))
    # Alone, in twos and in uneven batches handed over together: the same numbers.
    same = np.array_equal if exact else _close
    for size in (1, 2, 13):
        parts = [_Batch(rows.iloc[i : i + size]) for i in range(0, min(len(rows), 60), size)]
        joined = np.concatenate([fast.predict_values([p]) for p in parts])
        assert same(joined, got[: len(joined)])
        assert same(fast.predict_values(parts), got[: len(joined)])


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.max(np.abs(a - b)) <= PARITY_TOLERANCE)


def test_demo_pipeline_fast_path_matches_with_missing_and_unseen_values(demo: Fitted) -> None:
    fast, reason = _build(demo)
    assert reason == "ok" and fast is not None
    assert fast.trees is not None  # the trees are walked in numpy for small batches
    _assert_same(fast, demo.pipeline, _edge_rows(demo.holdout))


@pytest.mark.parametrize(
    "changes",
    [
        {"cleaning__impute_numeric": "mean", "cleaning__impute_categorical": "most_frequent"},
        {"cleaning__impute_numeric": "zero"},
        {"features__max_categories": 4},  # infrequent categories and unseen ones share a column
    ],
    ids=["mean-most-frequent", "zero", "infrequent"],
)
def test_other_preprocessing_the_config_can_ask_for(small_parquet: Path, changes) -> None:
    fitted = _fit(small_parquet, **changes)
    fast, reason = _build(fitted)
    assert reason == "ok", reason
    _assert_same(fast, fitted.pipeline, _edge_rows(fitted.holdout))


def test_a_linear_model_and_a_regressor(demo: Fitted) -> None:
    pre = demo.pipeline.steps[0][1]
    X = _frame(_Batch(demo.sample))
    y = (X["age"].fillna(40) > 40).astype(int)
    linear = Pipeline([("p", _clone(pre)), ("m", LogisticRegression(max_iter=200))]).fit(X, y)
    fast, reason = _build(demo, linear)
    assert reason == "ok", reason
    assert fast.trees is None
    _assert_same(fast, linear, _edge_rows(demo.holdout), exact=False)
    target = X["prestg10"].fillna(40.0)
    regressor = Pipeline(
        [("p", _clone(pre)), ("m", HistGradientBoostingRegressor(max_iter=20))]
    ).fit(X, target)
    fast, reason = _build(demo, regressor, classifier=False)
    assert reason == "ok", reason
    _assert_same(fast, regressor, _edge_rows(demo.holdout), proba=False)


def _clone(pre: ColumnTransformer) -> ColumnTransformer:
    from sklearn.base import clone

    return clone(pre)


def test_an_unknown_step_is_refused_with_its_name(demo: Fitted) -> None:
    X = _frame(_Batch(demo.sample))
    y = (X["age"].fillna(40) > 40).astype(int)
    pre = ColumnTransformer(
        [
            ("numeric", Pipeline([("i", SimpleImputer()), ("s", MinMaxScaler())]), NUMERIC),
            (
                "categorical",
                Pipeline(
                    [
                        ("i", SimpleImputer(strategy="constant", fill_value="x")),
                        ("e", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
                    ]
                ),
                CATEGORICAL,
            ),
        ]
    )
    pipeline = Pipeline([("p", pre), ("m", LogisticRegression(max_iter=100))]).fit(X, y)
    fast, reason = _build(demo, pipeline)
    assert fast is None
    assert "MinMaxScaler" in reason and "'numeric'" in reason


def test_a_mismatch_fails_the_parity_check(demo: Fitted) -> None:
    """A fast path that does not reproduce its pipeline (here: the pipeline's scaler moved
    after the fast path was built from it) is caught on the sample and edge rows."""
    import copy

    fast, _ = _build(demo)
    moved = copy.deepcopy(demo.pipeline)
    scaler = moved.steps[0][1].named_transformers_["numeric"].named_steps["scale"]
    scaler.mean_ = scaler.mean_ + np.array([0.0, 0.0, 0.5])
    rows = parity_rows(demo.pipeline, NUMERIC, CATEGORICAL, demo.sample)
    assert check_parity(fast, demo.pipeline, rows, True) is None
    problem = check_parity(fast, moved, rows, True)
    assert problem is not None and problem.startswith("parity check") and "above" in problem


def test_a_subclassed_step_is_not_trusted(demo: Fitted) -> None:
    class Clipped(StandardScaler):
        def transform(self, X, copy=None):
            return np.clip(super().transform(X, copy=copy), -3, 3)

    X = _frame(_Batch(demo.sample))
    y = (X["age"].fillna(40) > 40).astype(int)
    pre = ColumnTransformer(
        [("numeric", Pipeline([("i", SimpleImputer()), ("s", Clipped())]), NUMERIC)]
    )
    pipeline = Pipeline([("p", pre), ("m", LogisticRegression(max_iter=200))]).fit(X, y)
    fast, reason = build_fast_predictor(pipeline, NUMERIC, [], X[NUMERIC], True)
    assert fast is None and "Clipped" in reason


def test_served_model_answers_like_the_pipeline_through_the_request_schema(demo: Fitted) -> None:
    from modelcycle.serving import ServedModel

    fast, _ = _build(demo)
    schema = build_schema(demo.config, demo.pipeline, "refuse")
    rows = _edge_rows(demo.holdout, 40)
    payload = {
        "rows": [
            {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
            for r in rows.to_dict("records")
        ]
    }
    batch = schema.parse(payload, 100)
    common = dict(
        record=None,
        pipeline=demo.pipeline,
        config=demo.config,
        schema=schema,
        classes=(0, 1),
        loaded_at=None,
    )
    with_fast = ServedModel(**common, fast=fast, fast_reason="ok").predict([batch])
    without = ServedModel(**common).predict([batch])
    assert with_fast.labels == without.labels
    for a, b in zip(with_fast.probabilities, without.probabilities, strict=True):
        assert abs(a["1"] - b["1"]) <= PARITY_TOLERANCE

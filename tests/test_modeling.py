"""Training, search and fine-tuning of the one scikit-learn Pipeline, on a real data sample."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import demo_config_dict
from prefect.logging import disable_run_logger
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from modelcycle import data, training
from modelcycle.artifacts import dump_model
from modelcycle.config import PipelineConfig, parse_config
from modelcycle.errors import EstimatorError
from modelcycle.evaluation import compute_metrics, metric_value, predict_outputs
from tasks.training import fine_tune_model, train_model


def _config(source: Path, model: dict[str, Any], **changes: Any) -> PipelineConfig:
    raw = demo_config_dict()
    raw["data"] = {"source": str(source)}
    raw["model"] = model
    raw.update(changes)
    return parse_config(raw)


def _hgb(**params: Any) -> dict[str, Any]:
    return {
        "estimator": "sklearn.ensemble.HistGradientBoostingClassifier",
        "params": {"max_iter": 20, "early_stopping": False, **params},
        "fine_tune": {"extra_iterations": 7},
    }


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """OpenMP spin-waits badly on a busy 2-core runner; these models are tiny anyway."""
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def frames(small_parquet: Path) -> dict[str, pd.DataFrame]:
    """Cleaned sample split by period: `old` for first training, `new` for fine-tuning."""
    config = _config(small_parquet, _hgb())
    table, _ = data.clean(data.load_table(config, small_parquet), config)
    old = table.loc[table["year"] <= 1990].reset_index(drop=True)
    new = table.loc[table["year"] > 1990].reset_index(drop=True)
    return {"all": table, "old": old, "new": new}


def _xy(frame: pd.DataFrame, config: PipelineConfig) -> tuple[pd.DataFrame, pd.Series]:
    return data.features_and_target(frame, config)


def _preprocessing_state(pipeline: Pipeline) -> dict[str, Any]:
    """Every learned attribute of the fitted ColumnTransformer, as plain comparable values."""
    transformer = pipeline.named_steps["preprocess"]
    assert isinstance(transformer, ColumnTransformer)
    state: dict[str, Any] = {}
    for name, steps, _ in transformer.transformers_:
        if not isinstance(steps, Pipeline):
            continue
        for step_name, step in steps.steps:
            for attr, value in vars(step).items():
                if attr.endswith("_") and not attr.startswith("_"):
                    state[f"{name}.{step_name}.{attr}"] = copy.deepcopy(value)
    return state


def _assert_same_state(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert before.keys() == after.keys()
    for key, value in before.items():
        other = after[key]
        if isinstance(value, list):  # e.g. OneHotEncoder.categories_
            assert len(value) == len(other), key
            for a, b in zip(value, other, strict=True):
                np.testing.assert_array_equal(a, b, err_msg=key)
        elif isinstance(value, np.ndarray):
            np.testing.assert_array_equal(value, other, err_msg=key)
        else:
            assert value == other, key


# --- building and training -----------------------------------------------------------------


def test_pipeline_is_preprocessing_then_estimator_seeded_from_the_split(
    small_parquet: Path,
) -> None:
    config = _config(small_parquet, _hgb(), split={"strategy": "time", "seed": 11})
    pipeline = training.build_pipeline(config)
    assert [name for name, _ in pipeline.steps] == ["preprocess", training.MODEL_STEP]
    estimator = pipeline.named_steps[training.MODEL_STEP]
    assert type(estimator).__name__ == "HistGradientBoostingClassifier"
    assert estimator.random_state == 11
    assert estimator.max_iter == 20


def test_training_is_deterministic_for_a_seed(
    small_parquet: Path, frames: dict[str, pd.DataFrame]
) -> None:
    config = _config(small_parquet, _hgb())
    X, y = _xy(frames["old"], config)
    first = training.train(config, X, y).pipeline
    second = training.train(config, X, y).pipeline
    assert first is not second
    X_new, _ = _xy(frames["new"], config)
    np.testing.assert_array_equal(first.predict_proba(X_new), second.predict_proba(X_new))
    assert dump_model(first) == dump_model(second)


def test_a_different_seed_gives_a_different_model(
    small_parquet: Path, frames: dict[str, pd.DataFrame]
) -> None:
    # Column subsampling makes the seed matter, so the determinism test above is not vacuous.
    model = {
        "estimator": "sklearn.ensemble.RandomForestClassifier",
        "params": {"n_estimators": 10, "max_depth": 4},
    }
    X, y = _xy(frames["old"], _config(small_parquet, model))
    pipelines = []
    for seed in (1, 2):
        config = _config(small_parquet, model, split={"strategy": "time", "seed": seed})
        pipelines.append(training.train(config, X, y).pipeline)
    assert dump_model(pipelines[0]) != dump_model(pipelines[1])
    X_new, _ = _xy(frames["new"], _config(small_parquet, model))
    assert not np.array_equal(pipelines[0].predict_proba(X_new), pipelines[1].predict_proba(X_new))


def test_train_task_matches_the_function(
    small_parquet: Path, frames: dict[str, pd.DataFrame]
) -> None:
    config = _config(small_parquet, _hgb())
    with disable_run_logger():
        result = train_model.fn(frames["old"], config, 1)
    X, y = _xy(frames["old"], config)
    assert dump_model(result.pipeline) == dump_model(training.train(config, X, y).pipeline)
    assert result.search_results is None
    assert result.best_params == config.model.params


# --- search --------------------------------------------------------------------------------


def _search_model(**search: Any) -> dict[str, Any]:
    return {
        **_hgb(max_iter=15),
        "search": {"space": {"learning_rate": [0.02, 0.3], "max_leaf_nodes": [4, 15]}, **search},
    }


def test_search_picks_the_best_row_of_its_own_cv_table(
    small_parquet: Path, frames: dict[str, pd.DataFrame]
) -> None:
    config = _config(small_parquet, _search_model(cv=3))
    X, y = _xy(frames["old"], config)
    result = training.train(config, X, y)
    table = result.search_results
    assert table is not None
    assert len(table) == 4  # the full grid
    best_row = table.loc[table["mean_score"].idxmax()]
    for name, value in best_row["params"].items():
        assert result.best_params[name] == value
        assert result.pipeline.named_steps[training.MODEL_STEP].get_params()[name] == value
    assert best_row["rank"] == 1

    # The table's score is the real cross-validated ROC AUC, recomputed here with sklearn.
    folds = StratifiedKFold(n_splits=3, shuffle=True, random_state=config.split.seed)
    candidate = clone(training.build_pipeline(config)).set_params(
        **{f"{training.MODEL_STEP}__{k}": v for k, v in best_row["params"].items()}
    )
    scores = []
    for train_idx, test_idx in folds.split(X, y):
        fitted = clone(candidate).fit(X.iloc[train_idx], y.iloc[train_idx])
        scores.append(roc_auc_score(y.iloc[test_idx], fitted.predict_proba(X.iloc[test_idx])[:, 1]))
    assert best_row["mean_score"] == pytest.approx(np.mean(scores))


def test_search_on_a_lower_is_better_metric_picks_the_smallest(
    small_parquet: Path, frames: dict[str, pd.DataFrame]
) -> None:
    evaluation = {"primary_metric": "log_loss", "positive_class": 1}
    config = _config(small_parquet, _search_model(cv=2), evaluation=evaluation, gate={"floors": {}})
    assert not config.maximize
    X, y = _xy(frames["old"], config)
    result = training.train(config, X, y)
    table = result.search_results
    assert table is not None
    assert (table["mean_score"] > 0).all()  # log losses, reported as they are
    best_row = table.loc[table["mean_score"].idxmin()]
    assert best_row["rank"] == 1
    for name, value in best_row["params"].items():
        assert result.best_params[name] == value


def test_random_search_tries_n_iter_candidates(
    small_parquet: Path, frames: dict[str, pd.DataFrame]
) -> None:
    config = _config(small_parquet, _search_model(cv=2, n_iter=2))
    X, y = _xy(frames["old"], config)
    result = training.train(config, X, y)
    assert result.search_results is not None
    assert len(result.search_results) == 2


def test_search_over_an_unknown_parameter_is_refused(
    small_parquet: Path, frames: dict[str, pd.DataFrame]
) -> None:
    model = {**_hgb(), "search": {"space": {"learning_rat": [0.1, 0.2]}}}
    config = _config(small_parquet, model)
    X, y = _xy(frames["old"], config)
    with pytest.raises(EstimatorError, match="learning_rat"):
        training.train(config, X, y)


# --- fine-tuning ---------------------------------------------------------------------------


def test_fine_tune_keeps_preprocessing_and_grows_the_boosting(
    small_parquet: Path, frames: dict[str, pd.DataFrame]
) -> None:
    config = _config(small_parquet, _hgb())
    X_old, y_old = _xy(frames["old"], config)
    champion = training.train(config, X_old, y_old).pipeline
    champion_bytes = dump_model(champion)
    before = _preprocessing_state(champion)
    assert any(key.endswith("statistics_") for key in before)
    assert any(key.endswith("categories_") for key in before)
    iterations = champion.named_steps[training.MODEL_STEP].n_iter_

    X_new, y_new = _xy(frames["new"], config)
    tuned = training.fine_tune(champion, config, X_new, y_new)

    _assert_same_state(before, _preprocessing_state(tuned))
    tuned_model = tuned.named_steps[training.MODEL_STEP]
    assert tuned_model.n_iter_ == iterations + config.model.fine_tune.extra_iterations
    assert not np.array_equal(champion.predict_proba(X_new), tuned.predict_proba(X_new))
    assert dump_model(champion) == champion_bytes  # the champion itself is untouched


def test_fine_tune_task_reports_the_tuned_estimator_params(
    small_parquet: Path, frames: dict[str, pd.DataFrame]
) -> None:
    config = _config(small_parquet, _hgb())
    champion = training.train(config, *_xy(frames["old"], config)).pipeline
    with disable_run_logger():
        result = fine_tune_model.fn(champion, frames["new"], config, 1)
    assert result.best_params["max_iter"] == 20 + 7
    assert result.search_results is None


def test_fine_tune_with_partial_fit_keeps_preprocessing_and_moves_the_weights(
    small_parquet: Path, frames: dict[str, pd.DataFrame]
) -> None:
    model = {
        "estimator": "sklearn.linear_model.SGDClassifier",
        "params": {"loss": "log_loss", "max_iter": 50, "tol": None},
    }
    config = _config(small_parquet, model)
    champion = training.train(config, *_xy(frames["old"], config)).pipeline
    before = _preprocessing_state(champion)
    old_model = champion.named_steps[training.MODEL_STEP]
    old_coef, old_t = old_model.coef_.copy(), old_model.t_

    X_new, y_new = _xy(frames["new"], config)
    tuned = training.fine_tune(champion, config, X_new, y_new)

    _assert_same_state(before, _preprocessing_state(tuned))
    new_model = tuned.named_steps[training.MODEL_STEP]
    assert new_model.t_ == old_t + len(X_new)  # one more pass over the new rows
    assert not np.array_equal(new_model.coef_, old_coef)
    np.testing.assert_array_equal(new_model.classes_, old_model.classes_)
    np.testing.assert_array_equal(old_model.coef_, old_coef)  # champion untouched


def test_fine_tune_without_warm_start_or_partial_fit_is_refused(
    small_parquet: Path, frames: dict[str, pd.DataFrame]
) -> None:
    assert not hasattr(KNeighborsClassifier, "partial_fit")
    assert "warm_start" not in KNeighborsClassifier().get_params()
    model = {"estimator": "sklearn.neighbors.KNeighborsClassifier", "params": {"n_neighbors": 5}}
    config = _config(small_parquet, model)
    champion = training.train(config, *_xy(frames["old"], config)).pipeline
    with pytest.raises(EstimatorError, match="KNeighborsClassifier"):
        training.fine_tune(champion, config, *_xy(frames["new"], config))


# --- estimators that cannot be used --------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("sklearn.ensemble.NoSuchForest", ["NoSuchForest"]),
        ("no_such_package.Model", ["no_such_package"]),
        ("collections.OrderedDict", ["collections.OrderedDict", "scikit-learn"]),
        ("Ridge", ["Ridge", "import path"]),
        ("sklearn.linear_model.Ridge", ["Ridge", "not a classifier"]),
    ],
)
def test_unusable_estimators_are_refused(small_parquet: Path, path: str, words: list[str]) -> None:
    config = _config(small_parquet, {"estimator": path})
    with pytest.raises(EstimatorError) as info:
        training.build_pipeline(config)
    message = str(info.value)
    assert "model.estimator" in message
    for word in words:
        assert word in message


def test_unknown_estimator_parameter_is_refused(small_parquet: Path) -> None:
    config = _config(small_parquet, _hgb(max_iters=5))
    with pytest.raises(EstimatorError, match="max_iters"):
        training.build_pipeline(config)


# --- regression ----------------------------------------------------------------------------


def test_regression_with_ridge_trains_and_evaluates(
    small_parquet: Path, frames: dict[str, pd.DataFrame]
) -> None:
    raw_columns = demo_config_dict()["columns"]
    raw_columns.pop("high_income")
    config = _config(
        small_parquet,
        {"estimator": "sklearn.linear_model.Ridge", "params": {"alpha": 2.0}},
        task="regression",
        target="realrinc",
        columns=raw_columns,
        split={"strategy": "random", "seed": 5},
        evaluation={"primary_metric": "rmse", "extra_metrics": ["mae", "r2"]},
        gate={"floors": {"rmse": 1e9}},
    )
    table, _ = data.clean(data.load_table(config, small_parquet), config)
    train, test = data.split(table, config)
    X_train, y_train = _xy(train, config)
    X_test, y_test = _xy(test, config)

    pipeline = training.train(config, X_train, y_train).pipeline
    assert pipeline.named_steps[training.MODEL_STEP].random_state == 5  # the split seed

    outputs = predict_outputs(pipeline, X_test, config)
    assert outputs.proba is None
    truth = y_test.to_numpy(dtype="float64")
    pred = pipeline.predict(X_test)
    errors = truth - pred
    metrics = compute_metrics(y_test, outputs, config)
    assert metrics["rmse"] == pytest.approx(math.sqrt(float(np.mean(errors**2))))
    assert metrics["mae"] == pytest.approx(float(np.mean(np.abs(errors))))
    total = float(np.sum((truth - truth.mean()) ** 2))
    assert metrics["r2"] == pytest.approx(1 - float(np.sum(errors**2)) / total)
    assert metric_value("rmse", y_test, outputs, config) == metrics["rmse"]
    # A model worth its name beats predicting the training mean.
    baseline = math.sqrt(float(np.mean((truth - y_train.mean()) ** 2)))
    assert metrics["rmse"] < baseline


# --- known bugs ----------------------------------------------------------------------------


def test_invalid_search_candidate_is_an_estimator_error(
    small_parquet: Path, frames: dict[str, pd.DataFrame]
) -> None:
    model = {**_hgb(), "search": {"space": {"learning_rate": [-1.0, 0.1]}, "cv": 2}}
    config = _config(small_parquet, model)
    with pytest.raises(EstimatorError, match="learning_rate"):
        training.train(config, *_xy(frames["old"], config))


def test_probability_metric_with_an_estimator_without_predict_proba_is_refused(
    small_parquet: Path, frames: dict[str, pd.DataFrame]
) -> None:
    from modelcycle.errors import ModelcycleError

    config = _config(small_parquet, {"estimator": "sklearn.svm.LinearSVC"})
    assert config.evaluation.primary_metric == "roc_auc"
    X, y = _xy(frames["old"], config)
    with pytest.raises(ModelcycleError, match="predict_proba"):
        pipeline = training.train(config, X, y).pipeline
        compute_metrics(y, predict_outputs(pipeline, X, config), config)

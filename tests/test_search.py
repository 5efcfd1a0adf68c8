"""The search as independent candidates: same model as scikit-learn's search, on any runner."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import demo_config_dict
from prefect import flow
from prefect.logging import disable_run_logger
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV
from threadpoolctl import threadpool_limits

from modelcycle import data, training
from modelcycle.artifacts import dump_model, sha256_bytes
from modelcycle.config import Balance, PipelineConfig, SearchRunner, parse_config
from modelcycle.errors import ConfigError, EstimatorError
from modelcycle.evaluation import scorer
from modelcycle.training._search import _cv
from tasks.search import search_task_runner
from tasks.training import train_model


def _config(source: Path, **search_spec: Any) -> PipelineConfig:
    raw = demo_config_dict()
    raw["data"] = {"source": str(source)}
    raw["model"] = {
        "estimator": "sklearn.ensemble.HistGradientBoostingClassifier",
        "params": {"max_iter": 15, "early_stopping": False},
        "search": {
            "space": {"learning_rate": [0.02, 0.3], "max_leaf_nodes": [4, 15]},
            "cv": 3,
            **search_spec,
        },
    }
    return parse_config(raw)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def table(small_parquet: Path) -> pd.DataFrame:
    config = _config(small_parquet)
    cleaned, _ = data.clean(data.load_table(config, small_parquet), config)
    return cleaned.loc[cleaned["year"] <= 1990].reset_index(drop=True)


def _sklearn_reference(config: PipelineConfig, X: pd.DataFrame, y: pd.Series) -> Any:
    """scikit-learn's own search over the same grid, folds and scorer."""
    spec = config.model.search
    assert spec is not None
    grid = {f"{training.MODEL_STEP}__{k}": v for k, v in spec.space.items()}
    common = {"scoring": scorer(config), "cv": _cv(config), "refit": True}
    if spec.n_iter is not None:
        found = RandomizedSearchCV(
            training.build_pipeline(config),
            grid,
            n_iter=spec.n_iter,
            random_state=config.split.seed,
            **common,
        )
    else:
        found = GridSearchCV(training.build_pipeline(config), grid, **common)
    return found.fit(X, y)


def _local_search(config: PipelineConfig, X: pd.DataFrame, y: pd.Series) -> Any:
    tried = training.candidates(config)
    splits = training.folds(config, X, y)
    scores = [training.score_candidate(config, X, y, p, splits) for p in tried]
    return training.refit(config, X, y, training.rank(config, tried, scores))


@pytest.mark.parametrize("n_iter", [None, 3])
def test_candidates_scores_and_model_bytes_match_scikit_learn(
    small_parquet: Path, table: pd.DataFrame, n_iter: int | None
) -> None:
    config = _config(small_parquet, n_iter=n_iter)
    X, y = data.features_and_target(table, config)
    reference = _sklearn_reference(config, X, y)
    result = _local_search(config, X, y)

    expected = [
        {k.removeprefix(f"{training.MODEL_STEP}__"): v for k, v in p.items()}
        for p in reference.cv_results_["params"]
    ]
    assert training.candidates(config) == expected
    by_params = {
        str(p): s for p, s in zip(expected, reference.cv_results_["mean_test_score"], strict=True)
    }
    for _, row in result.search_results.iterrows():
        assert row["mean_score"] == pytest.approx(by_params[str(row["params"])], abs=1e-12)
    best = {
        k.removeprefix(f"{training.MODEL_STEP}__"): v for k, v in reference.best_params_.items()
    }
    assert {k: result.best_params[k] for k in best} == best
    assert dump_model(result.pipeline) == dump_model(reference.best_estimator_)


def test_sample_weights_reach_every_fold_and_the_refit_as_in_scikit_learn(
    small_parquet: Path, table: pd.DataFrame
) -> None:
    config = _config(small_parquet)
    balance = Balance(classes=True, sensitive_groups=True)
    model = config.model.model_copy(update={"balance": balance})
    config = config.model_copy(update={"model": model})
    X, y = data.features_and_target(table, config)
    weights = training.sample_weights(table, config)
    assert weights is not None and weights.std() > 0
    spec = config.model.search
    grid = {f"{training.MODEL_STEP}__{k}": v for k, v in spec.space.items()}
    reference = GridSearchCV(
        training.build_pipeline(config),
        grid,
        scoring=scorer(config),
        cv=_cv(config),
    ).fit(X, y, **{f"{training.MODEL_STEP}__sample_weight": weights})

    tried = training.candidates(config)
    splits = training.folds(config, X, y)
    scores = [training.score_candidate(config, X, y, p, splits, None, weights) for p in tried]
    result = training.refit(config, X, y, training.rank(config, tried, scores), None, weights)
    assert dump_model(result.pipeline) == dump_model(reference.best_estimator_)
    unweighted = _local_search(config, X, y)
    assert dump_model(unweighted.pipeline) != dump_model(result.pipeline)


def test_ties_go_to_the_earlier_candidate_with_a_shared_rank(small_parquet: Path) -> None:
    config = _config(small_parquet)
    tried = [{"a": 1}, {"a": 2}, {"a": 3}]
    outcome = training.rank(config, tried, [[0.5, 0.7], [0.6, 0.6], [0.1, 0.2]])
    assert outcome.best_params == {"a": 1}
    assert sorted(outcome.table["rank"].tolist()) == [1, 1, 3]


def test_rank_refuses_missing_scores(small_parquet: Path) -> None:
    with pytest.raises(EstimatorError, match="fold scores"):
        training.rank(_config(small_parquet), [{"a": 1}], [])


def test_runner_kind_is_validated_naming_the_key(small_parquet: Path) -> None:
    raw = demo_config_dict()
    raw["model"]["search"]["runner"] = {"kind": "spark"}
    with pytest.raises(ConfigError, match=r"model\.search\.runner\.kind"):
        parse_config(raw)


def test_dask_without_the_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prefect_dask", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"modelcycle\[dask\]"):
        search_task_runner(SearchRunner(kind="dask"))


@pytest.mark.slow
@pytest.mark.parametrize(
    "runner", [{"kind": "threads", "max_workers": 2}, {"kind": "dask", "max_workers": 2}]
)
def test_each_task_runner_gives_the_same_model_file(
    prefect_harness: None, small_parquet: Path, table: pd.DataFrame, runner: dict[str, Any]
) -> None:
    pytest.importorskip("prefect_dask")
    config = _config(small_parquet, runner=runner)
    X, y = data.features_and_target(table, config)
    expected = sha256_bytes(dump_model(_sklearn_reference(config, X, y).best_estimator_))

    @flow(name="search-runner-check")
    def check() -> Any:
        return train_model(table, config, 1)

    with disable_run_logger():
        result = check()
    assert sha256_bytes(dump_model(result.pipeline)) == expected
    assert len(result.search_results) == 4

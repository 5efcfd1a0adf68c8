"""The hyperparameter search's candidates as Prefect tasks, on the task runner the config names.

`model.search.runner` picks Prefect's ThreadPoolTaskRunner (bounded threads in the flow's
process) or DaskTaskRunner (a local Dask cluster; the `dask` extra). Each candidate is one task
run, visible in the UI; the refit of the best candidate happens in the calling task.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from prefect import get_run_logger, task
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from modelcycle import training
from modelcycle.config import PipelineConfig, SearchRunner
from modelcycle.errors import ConfigError
from tasks.common import TASK_OPTIONS


def search_task_runner(spec: SearchRunner) -> TaskRunner[Any]:
    """A fresh task runner for one search; Dask is imported only when asked for."""
    if spec.kind == "dask":
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError:
            raise ConfigError(
                "model.search.runner.kind: 'dask' needs the dask extra: "
                "pip install 'modelcycle[dask]'"
            ) from None
        return DaskTaskRunner(
            cluster_kwargs={
                "n_workers": spec.max_workers,
                "threads_per_worker": 1,
                "processes": True,
                "dashboard_address": ":0",  # any free port: two searches never clash
            }
        )
    return ThreadPoolTaskRunner(max_workers=spec.max_workers)


@task(name="score-candidate", **TASK_OPTIONS)
def score_candidate(
    config: PipelineConfig,
    X: pd.DataFrame,
    y: pd.Series,
    params: dict[str, Any],
    splits: list[training.Split],
    threads: int | None,
    sample_weight: np.ndarray | None = None,
) -> list[float]:
    return training.score_candidate(config, X, y, params, splits, threads, sample_weight)


def run_search(
    config: PipelineConfig,
    X: pd.DataFrame,
    y: pd.Series,
    threads: int | None,
    sample_weight: np.ndarray | None = None,
) -> training.SearchOutcome:
    """Score every candidate on the configured runner and rank them (called inside a task)."""
    spec = config.model.search
    assert spec is not None
    tried = training.candidates(config)
    splits = training.folds(config, X, y)
    get_run_logger().info(
        "Scoring %d candidates x %d folds on %s (max_workers=%d)",
        len(tried),
        len(splits),
        spec.runner.kind,
        spec.runner.max_workers,
    )
    with search_task_runner(spec.runner) as runner:
        futures = [
            runner.submit(
                score_candidate,
                parameters={
                    "config": config,
                    "X": X,
                    "y": y,
                    "params": params,
                    "splits": splits,
                    "threads": threads,
                    "sample_weight": sample_weight,
                },
            )
            for params in tried
        ]
        scores = [future.result() for future in futures]
    return training.rank(config, tried, scores)

"""Training steps: from scratch (with optional search) or continuing the champion."""

from __future__ import annotations

import pandas as pd
from prefect import get_run_logger, task
from sklearn.pipeline import Pipeline

from modelcycle import modeling
from modelcycle import search as hyperparameter_search
from modelcycle.config import PipelineConfig
from modelcycle.data import features_and_target
from modelcycle.modeling import TrainResult
from tasks.common import TASK_OPTIONS
from tasks.search import run_search


@task(name="train-model", **TASK_OPTIONS)
def train_model(train: pd.DataFrame, config: PipelineConfig, threads: int) -> TrainResult:
    X, y = features_and_target(train, config)
    search = config.model.search
    get_run_logger().info(
        "Training %s on %d rows%s",
        config.model.estimator,
        len(X),
        f" with a search over {search.space} ({search.cv}-fold CV)" if search else "",
    )
    if search is None:
        result = modeling.train(config, X, y, threads)
    else:
        result = hyperparameter_search.refit(
            config, X, y, run_search(config, X, y, threads), threads
        )
    get_run_logger().info("Trained %s with %s", config.model.estimator, result.best_params)
    return result


@task(name="fine-tune-model", **TASK_OPTIONS)
def fine_tune_model(
    champion: Pipeline, train: pd.DataFrame, config: PipelineConfig, threads: int
) -> TrainResult:
    X, y = features_and_target(train, config)
    tuned = modeling.fine_tune(champion, config, X, y, threads)
    get_run_logger().info("Fine-tuned the champion on %d new rows", len(X))
    return TrainResult(tuned, tuned.steps[-1][1].get_params(), None)

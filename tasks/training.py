"""Training steps: from scratch (with optional search) or continuing the champion."""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import get_run_logger, task
from sklearn.pipeline import Pipeline

from modelcycle import training
from modelcycle.config import PipelineConfig
from modelcycle.data import features_and_target
from modelcycle.gate import edge_cases
from modelcycle.training import CompileOutcome, DistilResult, TrainResult
from modelcycle.utils import thread_limit
from tasks.common import TASK_OPTIONS
from tasks.search import run_search


@task(name="train-model", **TASK_OPTIONS)
def train_model(
    train: pd.DataFrame,
    config: PipelineConfig,
    threads: int,
    balanced: bool = True,
    fixed_params: dict[str, Any] | None = None,
) -> TrainResult:
    """`balanced=False` ignores model.balance; with `fixed_params` (the weighted fit's chosen
    parameters) it skips the search: the unweighted fit the card compares fairness against."""
    if fixed_params is not None:
        model = config.model.model_copy(update={"params": fixed_params, "search": None})
        config = config.model_copy(update={"model": model})
    X, y = features_and_target(train, config)
    weights = training.sample_weights(train, config) if balanced else None
    search = config.model.search
    get_run_logger().info(
        "Training %s on %d rows%s%s",
        config.model.estimator,
        len(X),
        f" with a search over {search.space} ({search.cv}-fold CV)" if search else "",
        " with balancing weights" if weights is not None else "",
    )
    if search is None:
        result = training.train(config, X, y, threads, weights)
    else:
        outcome = run_search(config, X, y, threads, weights)
        result = training.refit(config, X, y, outcome, threads, weights)
    get_run_logger().info("Trained %s with %s", config.model.estimator, result.best_params)
    return result


@task(name="compile-model", **TASK_OPTIONS)
def compile_model(
    pipeline: Pipeline, holdout: pd.DataFrame, config: PipelineConfig, threads: int
) -> CompileOutcome:
    """The compiled form, kept only if it answers as the pipeline does on the holdout and on
    the gate's edge-case rows (missing values, unseen categories, out-of-range numbers)."""
    X, _ = features_and_target(holdout, config)
    rows = {"holdout": X, **edge_cases(X, config)}
    with thread_limit(threads):
        outcome = training.compile_with_parity(
            pipeline, rows, config.model.compile.max_proba_difference
        )
    evidence = outcome.evidence
    if outcome.kept:
        get_run_logger().info(
            "Compiled the pipeline (%s %s, %d bytes); parity passed on %s",
            evidence["runtime"],
            evidence["runtime_version"],
            evidence["bytes"],
            ", ".join(evidence["parity"]["sets"]),
        )
    else:
        get_run_logger().warning("No compiled form kept: %s", evidence["reason"])
    return outcome


@task(name="distil-model", **TASK_OPTIONS)
def distil_model(
    teacher: Pipeline, train: pd.DataFrame, config: PipelineConfig, threads: int
) -> DistilResult:
    """The student learns the teacher's outputs on the training rows and their neighbours."""
    X, _ = features_and_target(train, config)
    result = training.distil(teacher, config, X, threads)
    get_run_logger().info(
        "Distilled the champion into %s on %d rows and %d synthetic neighbours",
        result.student,
        result.rows["train"],
        result.rows["neighbours"],
    )
    return result


@task(name="fine-tune-model", **TASK_OPTIONS)
def fine_tune_model(
    champion: Pipeline,
    train: pd.DataFrame,
    config: PipelineConfig,
    threads: int,
    balanced: bool = True,
) -> TrainResult:
    X, y = features_and_target(train, config)
    weights = training.sample_weights(train, config) if balanced else None
    tuned = training.fine_tune(champion, config, X, y, threads, weights)
    get_run_logger().info("Fine-tuned the champion on %d new rows", len(X))
    return TrainResult(tuned, tuned.steps[-1][1].get_params(), None)

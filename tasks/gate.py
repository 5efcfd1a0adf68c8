"""Gate steps: gather each kind of evidence, judge it, and show the verdict in the UI."""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from sklearn.pipeline import Pipeline

from modelcycle import gate
from modelcycle.config import PipelineConfig
from modelcycle.evaluation import Outputs
from modelcycle.gate import (
    PairedInterval,
    budget_evidence,
    fairness_evidence,
    metric_intervals,
    paired_difference,
    robustness_evidence,
)
from modelcycle.reports import gate_report
from modelcycle.utils import thread_limit
from tasks.common import TASK_OPTIONS


@task(name="non-inferiority", **TASK_OPTIONS)
def non_inferiority(
    test: pd.DataFrame,
    candidate: Outputs,
    champion: Outputs | None,
    config: PipelineConfig,
) -> PairedInterval | None:
    """Paired bootstrap of (challenger - champion); None is the recorded no-champion branch."""
    if champion is None:
        return None
    spec = config.gate.non_inferiority
    return paired_difference(
        test[config.target],
        candidate,
        champion,
        config.evaluation.primary_metric,
        config,
        spec.bootstrap,
        spec.confidence,
        spec.seed,
    )


@task(name="metric-intervals", **TASK_OPTIONS)
def confidence_intervals(
    test: pd.DataFrame, outputs: Outputs, config: PipelineConfig
) -> dict[str, dict[str, float]]:
    spec = config.gate.non_inferiority
    return metric_intervals(
        test[config.target], outputs, config, spec.bootstrap, spec.confidence, spec.seed
    )


@task(name="fairness", **TASK_OPTIONS)
def assess_fairness(
    test: pd.DataFrame, outputs: Outputs, config: PipelineConfig
) -> dict[str, dict[str, Any]]:
    return fairness_evidence(test, outputs, config)


@task(name="robustness", **TASK_OPTIONS)
def assess_robustness(
    pipeline: Pipeline, test: pd.DataFrame, config: PipelineConfig, threads: int
) -> dict[str, Any]:
    with thread_limit(threads):
        return robustness_evidence(pipeline, test, config)


@task(name="budgets", **TASK_OPTIONS)
def measure_budgets(
    pipeline: Pipeline, test: pd.DataFrame, config: PipelineConfig, model_bytes: int, threads: int
) -> dict[str, Any]:
    """Timed with the same thread cap as training: what a worker of this deployment gets."""
    with thread_limit(threads):
        return budget_evidence(pipeline, test, config, model_bytes)


@task(name="gate", **TASK_OPTIONS)
def judge(
    metrics: dict[str, float],
    interval: PairedInterval | None,
    slices: list[dict[str, Any]],
    fairness: dict[str, dict[str, Any]],
    robustness: dict[str, Any],
    budgets: dict[str, Any],
    config: PipelineConfig,
    champion_version: int | None,
) -> gate.GateDecision:
    """Every check of the policy, then promote / reject / needs_approval."""
    checks = [
        *gate.floor_checks(metrics, config),
        gate.non_inferiority_check(interval, config, champion_version),
        *gate.slice_checks(slices, config),
        *gate.fairness_checks(fairness, config),
        *gate.robustness_checks(robustness, config),
        *gate.budget_checks(budgets, config),
    ]
    decision = gate.decide(checks, config, champion_version)
    failed = [c.name for c in checks if c.failed]
    get_run_logger().info(
        "Gate: %s (%d checks, %d judged, failed: %s)",
        decision.outcome,
        len(checks),
        sum(c.judged for c in checks),
        failed or "none",
    )
    return decision


@task(name="publish-gate-report", **TASK_OPTIONS)
def publish_gate_report(model: str, run_id: str, decision: dict[str, Any]) -> None:
    """Before any pause: the reviewer reads this table in the UI to decide."""
    create_markdown_artifact(
        key=f"{model}-gate-report",
        markdown=gate_report(model, run_id, decision),
        description=f"Gate checks for {model}: value, limit, pass/fail, evidence file",
    )

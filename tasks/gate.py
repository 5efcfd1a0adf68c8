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
from modelcycle.training import DistilResult
from modelcycle.utils import thread_limit
from tasks.common import TASK_OPTIONS
from tasks.evaluation import ChampionScore, EvaluationResult


@task(name="non-inferiority", **TASK_OPTIONS)
def measure_non_inferiority(
    holdout: pd.DataFrame,
    candidate: Outputs,
    champion: ChampionScore | None,
    config: PipelineConfig,
) -> PairedInterval | None:
    """Paired bootstrap of (challenger - champion); None is the recorded no-champion branch."""
    if champion is None:
        return None
    spec = config.gate.non_inferiority
    return paired_difference(
        holdout[config.target],
        candidate,
        champion.outputs,
        config.evaluation.primary_metric,
        config,
        spec.bootstrap,
        spec.confidence,
        spec.seed,
    )


@task(name="metric-intervals", **TASK_OPTIONS)
def measure_metric_intervals(
    holdout: pd.DataFrame, outputs: Outputs, config: PipelineConfig
) -> dict[str, dict[str, float]]:
    """The candidate's own bootstrap interval per metric (the card shows them); not judged."""
    spec = config.gate.non_inferiority
    return metric_intervals(
        holdout[config.target], outputs, config, spec.bootstrap, spec.confidence, spec.seed
    )


@task(name="fairness", **TASK_OPTIONS)
def assess_fairness(
    holdout: pd.DataFrame, outputs: Outputs, config: PipelineConfig
) -> dict[str, dict[str, Any]]:
    return fairness_evidence(holdout, outputs, config)


@task(name="robustness", **TASK_OPTIONS)
def assess_robustness(
    pipeline: Pipeline, holdout: pd.DataFrame, config: PipelineConfig, threads: int
) -> dict[str, Any]:
    with thread_limit(threads):
        return robustness_evidence(pipeline, holdout, config)


@task(name="budgets", **TASK_OPTIONS)
def measure_budgets(
    pipeline: Pipeline,
    holdout: pd.DataFrame,
    config: PipelineConfig,
    model_bytes: int,
    threads: int,
) -> dict[str, Any]:
    """Timed with the same thread cap as training: what a worker of this deployment gets."""
    with thread_limit(threads):
        return budget_evidence(pipeline, holdout, config, model_bytes)


@task(name="fidelity", **TASK_OPTIONS)
def measure_fidelity(
    student: Outputs, teacher: ChampionScore, config: PipelineConfig
) -> dict[str, Any]:
    """A distilled student against its teacher (the champion) on the same holdout rows."""
    return gate.fidelity_evidence(student, teacher.outputs, config)


@task(name="distillation-record", **TASK_OPTIONS)
def distillation_record(
    distilled: DistilResult,
    fidelity: dict[str, Any],
    student_metrics: dict[str, float],
    student_budgets: dict[str, Any],
    teacher: ChampionScore,
    teacher_budgets: dict[str, Any],
    config: PipelineConfig,
) -> dict[str, Any]:
    """Student and teacher measured in this run, for the card's side-by-side table."""

    def measures(metrics: dict[str, float], budgets: dict[str, Any]) -> dict[str, Any]:
        keep = ("model_mb", "model_bytes", "latency_ms_per_1000")
        return {"metrics": dict(metrics), **{k: budgets[k] for k in keep}}

    return {
        "student": distilled.student,
        "params": distilled.params,
        "targets": "probabilities" if config.task.is_classification else "predictions",
        "rows": distilled.rows,
        "neighbours": config.model.distillation.model_dump(
            include={"neighbours", "jitter", "resample_share", "seed"}
        ),
        "fidelity": fidelity,
        "min_fidelity": config.model.distillation.min_fidelity,
        "student_measures": measures(student_metrics, student_budgets),
        "teacher_measures": measures(teacher.metrics, teacher_budgets),
    }


@task(name="gate", **TASK_OPTIONS)
def judge(
    evaluated: EvaluationResult,
    non_inferiority: PairedInterval | None,
    fairness: dict[str, dict[str, Any]],
    robustness: dict[str, Any],
    budgets: dict[str, Any],
    config: PipelineConfig,
    champion_version: int | None,
    fidelity: dict[str, Any] | None = None,
) -> gate.GateDecision:
    """Every check of the policy, then promote / reject / needs_approval; a distilled student
    is also judged on its fidelity to the teacher."""
    degenerate = gate.degenerate_check(evaluated.outputs, config)
    checks = [
        *gate.floor_checks(evaluated.metrics, config),
        gate.non_inferiority_check(non_inferiority, config, champion_version),
        *([degenerate] if degenerate is not None else []),
        *gate.slice_checks(evaluated.slices, config),
        *gate.fairness_checks(fairness, config, degenerate),
        *gate.robustness_checks(robustness, config),
        *gate.budget_checks(budgets, config),
        *([gate.fidelity_check(fidelity, config)] if fidelity is not None else []),
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
def publish_gate_report(model: str, run_id: str, decision: gate.GateDecision) -> None:
    """Before any pause: the reviewer reads this table in the UI to decide."""
    create_markdown_artifact(
        key=f"{model}-gate-report",
        markdown=gate_report(model, run_id, decision.to_dict()),
        description=f"Gate checks for {model}: value, limit, pass/fail, evidence file",
    )

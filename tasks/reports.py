"""The one record per run: collected once, after the last measurement and before anything is
written, so the run folder, the registry, the card and the summary all read the same facts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import task

from modelcycle.config import PipelineConfig, TrainingMode
from modelcycle.data import CleaningReport
from modelcycle.gate import GateDecision, PairedInterval
from modelcycle.monitoring import (
    ColumnDrift,
    Decision,
    DriftResult,
    Finding,
    ProductionReport,
    Quality,
    SampledReport,
    Window,
)
from modelcycle.reports import MonitoringRun, TrainingRun
from modelcycle.training import CompileOutcome, TrainResult
from tasks.common import TASK_OPTIONS
from tasks.evaluation import ChampionScore, EvaluationResult, Importance
from tasks.monitoring import Monitored


@task(name="collect-training-run", **TASK_OPTIONS)
def collect_training_run(
    *,
    config: PipelineConfig,
    run_id: str,
    mode: TrainingMode,
    parent_version: int | None,
    lineage: dict[str, Any],
    fingerprints: dict[str, str],
    profile: dict[str, Any],
    cleaning: CleaningReport,
    trained: TrainResult,
    model_file: tuple[bytes, str],
    evaluated: EvaluationResult,
    champion_score: ChampionScore | None,
    comparison: dict[str, Any] | None,
    metric_intervals: dict[str, dict[str, float]],
    non_inferiority: PairedInterval | None,
    fairness: dict[str, Any],
    fairness_unweighted: dict[str, Any] | None,
    robustness: dict[str, Any],
    budgets: dict[str, Any],
    importance: Importance,
    gate: GateDecision,
    reference_files: dict[str, bytes],
    distillation: dict[str, Any] | None = None,
    compiled: CompileOutcome | None = None,
) -> TrainingRun:
    """The fitted pipeline and the holdout outputs stay behind: the record keeps only what is
    written, registered or shown."""
    model_bytes, model_sha256 = model_file
    return TrainingRun(
        config=config,
        run_id=run_id,
        mode=mode,
        parent_version=parent_version,
        lineage=lineage,
        fingerprints=fingerprints,
        profile=profile,
        cleaning=cleaning,
        best_params=trained.best_params,
        search_results=trained.search_results,
        model_bytes=model_bytes,
        model_sha256=model_sha256,
        metrics=evaluated.metrics,
        champion_metrics=champion_score.metrics if champion_score else None,
        comparison=comparison,
        slices=evaluated.slices,
        figures=evaluated.figures,
        metric_intervals=metric_intervals,
        non_inferiority=non_inferiority,
        fairness=fairness,
        fairness_unweighted=fairness_unweighted,
        robustness=robustness,
        budgets=budgets,
        importance=importance.table,
        importance_figure=importance.figure,
        gate=gate,
        reference_files=reference_files,
        distillation=distillation,
        compiled=compiled,
    )


@task(name="collect-monitoring-run", **TASK_OPTIONS)
def collect_monitoring_run(
    champion: Monitored,
    window: Window,
    findings: list[Finding],
    decision: Decision,
    features: DriftResult | None,
    prediction: ColumnDrift | None,
    quality: Quality | None,
    html: SampledReport | None,
    production: ProductionReport | None = None,
    log_range: tuple[datetime | None, datetime] | None = None,
) -> MonitoringRun:
    """The window's facts, not its rows; the champion's training config is what a retraining
    run triggered by this verdict starts from (on the log range judged, when it was one)."""
    since, until = log_range if log_range is not None else (None, None)
    return MonitoringRun(
        champion=champion.version,
        window=window.facts(),
        config_path=champion.reference.meta["config_path"],
        retrain_mode=champion.config.monitoring.retrain_mode,
        retrain_overrides=champion.config.monitoring.retrain_overrides(since, until),
        decision=decision,
        findings=findings,
        features=features,
        prediction=prediction,
        quality=quality,
        html=html,
        production=production,
    )

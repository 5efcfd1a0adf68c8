"""The training flow: prepare -> train or fine-tune -> evaluate -> gate (-> approval) ->
register -> promote."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from modelcycle.config import ConfigPath, TrainingMode, TrainingOverrides
from modelcycle.registry import Registration
from modelcycle.reports import training_summary
from modelcycle.settings import get_settings
from modelcycle.utils import json_ready
from tasks.approval import request_approval
from tasks.artifacts import MODEL_FILE, RunContents, publish_card, publish_report, write_run_folder
from tasks.card import gather_card_facts, render_training_card, render_version_card
from tasks.data import (
    clean_data,
    fingerprint_data,
    load_data,
    load_pipeline_config,
    profile_data,
    split_data,
    validate_data,
)
from tasks.evaluation import (
    compare_with_champion,
    evaluate_model,
    explain_model,
    predict_holdout,
    score_champion,
)
from tasks.gate import (
    assess_fairness,
    assess_robustness,
    confidence_intervals,
    judge,
    measure_budgets,
    non_inferiority,
    publish_gate_report,
)
from tasks.lineage import record_lineage, serialize_model
from tasks.monitoring import build_reference_data
from tasks.registry import (
    load_champion,
    promote_champion,
    record_approval,
    register_version,
)
from tasks.training import fine_tune_model, train_model


@flow(
    name="training", description="Train (or fine-tune) a model, gate it, register it, promote it."
)
def training(
    config_path: ConfigPath = "configs/demo.yaml",
    mode: TrainingMode = TrainingMode.scratch,
    overrides: TrainingOverrides | None = None,
    actor: str = "training-flow",
) -> dict[str, Any]:
    """Run one model pipeline from its YAML config.

    The gate judges the candidate on floors, a paired bootstrap against the champion, slices,
    fairness, robustness and budgets; when the policy asks for a human, the run pauses for the
    reviewer's form. A rejected candidate is registered as `rejected`, never promoted.

    Args:
        config_path: A pipeline config in `configs/`.
        mode: `scratch` fits a new pipeline; `fine_tune` continues the champion on new data.
        overrides: Per-run changes (data file, time range, seed, parameters, no search).
        actor: Who is recorded in the audit log for this run.
    """
    settings = get_settings()
    run_id = flow_run.id
    config = load_pipeline_config(config_path, overrides)
    champion = load_champion(config.name, settings.registry_url, mode is TrainingMode.fine_tune)
    parent = champion.version.version if champion else None

    table, source = load_data(config, settings.data_dir)
    validate_data(table, config, source)
    cleaned, cleaning = clean_data(table, config)
    train, test = split_data(cleaned, config)
    fingerprints = fingerprint_data(train, test)
    profile = profile_data(train, test)

    fine_tuning = mode is TrainingMode.fine_tune
    threads = settings.training_threads
    if fine_tuning:
        result = fine_tune_model(champion.pipeline, train, config, threads)
    else:
        result = train_model(train, config, threads)
    unweighted_outputs = None
    if config.model.balance.enabled:  # the same fit without weights, for the card's comparison
        plain = (
            fine_tune_model(champion.pipeline, train, config, threads, balanced=False)
            if fine_tuning
            else train_model(train, config, threads, False, result.best_params)
        )
        unweighted_outputs = predict_holdout(plain.pipeline, test, config, threads)

    evaluated = evaluate_model(result.pipeline, test, config, threads)
    champion_score = score_champion(champion.pipeline, test, config, threads) if champion else None
    champion_metrics = champion_score.metrics if champion_score else None
    comparison = compare_with_champion(evaluated.metrics, champion_metrics)
    reference = build_reference_data(
        train, test, result.pipeline, config, evaluated.metrics, config_path
    )
    lineage = record_lineage(config, fingerprints, source, mode.value, parent, run_id)
    model_bytes, model_sha256 = serialize_model(result.pipeline)

    interval = non_inferiority(
        test, evaluated.outputs, champion_score.outputs if champion_score else None, config
    )
    intervals = confidence_intervals(test, evaluated.outputs, config)
    fairness = assess_fairness(test, evaluated.outputs, config)
    fairness_unweighted = (
        assess_fairness(test, unweighted_outputs, config) if unweighted_outputs else None
    )
    robustness = assess_robustness(result.pipeline, test, config, threads)
    budgets = measure_budgets(result.pipeline, test, config, len(model_bytes), threads)
    importance = explain_model(result.pipeline, test, config, threads)
    gate = judge(
        evaluated.metrics,
        interval,
        evaluated.slices,
        fairness,
        robustness,
        budgets,
        config,
        champion.version.version if champion else None,
    )
    publish_gate_report(config.name, run_id, gate.to_dict())
    if gate.outcome == "needs_approval":
        approval = config.gate.approval
        gate = request_approval(config.name, gate, approval.timeout_seconds, approval.poll_seconds)
    decision = gate.to_dict()

    facts = gather_card_facts(
        config=config,
        run_id=run_id,
        lineage=lineage,
        fingerprints=fingerprints,
        rows={"train": len(train), "holdout": len(test)},
        mode=mode.value,
        best_params=result.best_params,
        metrics=evaluated.metrics,
        intervals=intervals,
        comparison=comparison,
        non_inferiority=interval.to_dict() if interval else None,
        slices=evaluated.slices,
        fairness=fairness,
        fairness_unweighted=fairness_unweighted,
        robustness=robustness,
        budgets=budgets,
        importance=importance.table.to_dict(orient="records"),
        gate=decision,
    )
    contents = RunContents(
        model_bytes=model_bytes,
        metrics=evaluated.metrics,
        champion_metrics=champion_metrics,
        comparison=comparison,
        slices=evaluated.slices,
        gate=decision,
        profile=profile,
        cleaning=cleaning.to_dict(),
        search_results=result.search_results,
        figures={**evaluated.figures, "permutation_importance.png": importance.figure},
        metadata={**lineage, "model_file": MODEL_FILE, "model_sha256": model_sha256},
        evidence={
            "metric_intervals.json": intervals,
            "gate/non_inferiority.json": interval.to_dict() if interval else {"champion": None},
            "gate/fairness.json": {"balanced": fairness, "unbalanced": fairness_unweighted},
            "gate/robustness.json": robustness,
            "gate/budgets.json": budgets,
            "card.json": facts,
        },
        texts={
            "importance.csv": importance.table.to_csv(index=False),
            "card.md": render_training_card(facts),
        },
        reference_files=reference,
    )
    folder = write_run_folder(settings.artifact_store, config.name, run_id, contents)

    registration = Registration(
        model_name=config.name,
        owner=config.owner,
        description=config.description,
        run_id=run_id,
        artifact_uri=folder.uri,
        model_file=MODEL_FILE,
        model_sha256=model_sha256,
        data_fingerprint=fingerprints["train"],
        config_hash=lineage["config_hash"],
        code_version=lineage["code_version"],
        package_versions=lineage["package_versions"],
        parent_version=parent,
        metrics=json_ready(evaluated.metrics),
        gate=json_ready(decision),
    )
    version = register_version(settings.registry_url, registration, gate.passed, actor)
    if gate.approval is not None:
        record_approval(settings.registry_url, version, gate.approval)
    if gate.passed:
        reason = (
            f"passed the gate and approved by {gate.approval['reviewer']}"
            if gate.approval
            else "passed the gate in training"
        )
        version = promote_champion(settings.registry_url, version, actor, reason)

    summary = training_summary(
        model=config.name,
        version=version.version,
        status=str(version.status),
        mode=mode.value,
        parent_version=parent,
        metrics=evaluated.metrics,
        comparison=comparison,
        gate=decision,
        slices=evaluated.slices,
        primary_metric=config.evaluation.primary_metric,
        fingerprints=fingerprints,
        rows={"train": len(train), "holdout": len(test)},
        run_uri=folder.uri,
        code_version=lineage["code_version"],
        config_hash=lineage["config_hash"],
    )
    publish_report(config.name, summary, evaluated.metrics, comparison, folder.uri)
    publish_card(config.name, render_version_card(settings.registry_url, version))
    return {
        "model": config.name,
        "version": version.version,
        "status": str(version.status),
        "primary_metric": config.evaluation.primary_metric,
        "metrics": evaluated.metrics,
        "champion_metrics": champion_metrics,
        "parent_version": parent,
        "gate": decision["decision"],
        "approval": decision["approval"],
        "non_inferiority": interval.to_dict() if interval else None,
        "failed_checks": [c["name"] for c in decision["checks"] if c["judged"] and not c["passed"]],
        "run_folder": folder.uri,
    }


if __name__ == "__main__":
    training()

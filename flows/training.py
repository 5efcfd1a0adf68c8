"""The training flow: prepare -> train or fine-tune -> evaluate -> gate (-> approval) ->
register -> promote."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from modelcycle.config import ConfigPath, TrainingMode, TrainingOverrides
from modelcycle.settings import get_settings
from modelcycle.training import TrainResult
from tasks.approval import request_approval
from tasks.artifacts import (
    confirm_run_folder,
    publish_card,
    publish_report,
    reconcile_run_folders,
    write_run_folder,
)
from tasks.card import render_version_card
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
from tasks.experiment import start_shadow
from tasks.gate import (
    assess_fairness,
    assess_robustness,
    distillation_record,
    judge,
    measure_budgets,
    measure_fidelity,
    measure_metric_intervals,
    measure_non_inferiority,
    publish_gate_report,
)
from tasks.governance import held_by_test_score
from tasks.lineage import record_lineage, serialize_model
from tasks.monitoring import build_reference_data
from tasks.registry import (
    load_champion,
    promote_champion,
    record_approval,
    register_version,
)
from tasks.reports import collect_training_run
from tasks.training import compile_model, distil_model, fine_tune_model, train_model


@flow(
    name="training", description="Train (or fine-tune) a model, gate it, register it, promote it."
)
def training(
    config_path: ConfigPath,
    mode: TrainingMode = TrainingMode.scratch,
    overrides: TrainingOverrides | None = None,
    actor: str = "training-flow",
) -> dict[str, Any]:
    """Run one model pipeline from its YAML config.

    The gate judges the candidate on floors, a paired bootstrap against the champion, slices,
    fairness, robustness and budgets; when the policy asks for a human, the run pauses for the
    reviewer's form. A rejected candidate is registered as `rejected`, never promoted.

    Args:
        config_path: A pipeline config in `configs/` (the deployments name the demo's).
        mode: `scratch` fits a new pipeline; `fine_tune` continues the champion on new data;
            `distil` trains a smaller student on the champion's outputs (the config's
            `model.distillation`), judged with a fidelity check besides every other one.
        overrides: Per-run changes (data file, time range, seed, parameters, no search).
        actor: Who is recorded in the audit log for this run.
    """
    settings, run_id = get_settings(), flow_run.id
    threads, fine_tuning = settings.training_threads, mode is TrainingMode.fine_tune
    distilling = mode is TrainingMode.distil

    # prepare: the config, the champion to beat, and the data, split once
    config = load_pipeline_config(config_path, overrides)
    champion = load_champion(config.name, settings.registry_url, fine_tuning or distilling)
    parent = champion.version.version if champion else None
    rows = load_data(config, settings.data_dir)
    validate_data(rows.table, config, rows.source, rows.duplicated)
    cleaned, cleaning = clean_data(rows.table, config, rows.duplicated)
    train, holdout = split_data(cleaned, config)
    fingerprints = fingerprint_data(train, holdout)
    profile = profile_data(train, holdout)

    # train: from scratch, from the champion, or a student of the champion
    distilled = distil_model(champion.pipeline, train, config, threads) if distilling else None
    if distilled is not None:
        trained = TrainResult(distilled.pipeline, distilled.params, None)
    elif fine_tuning:
        trained = fine_tune_model(champion.pipeline, train, config, threads)
    else:
        trained = train_model(train, config, threads)
    unweighted_outputs = None
    if (
        config.model.balance.enabled and not distilling
    ):  # the same fit without weights, for the card's comparison
        plain = (
            fine_tune_model(champion.pipeline, train, config, threads, balanced=False)
            if fine_tuning
            else train_model(train, config, threads, False, trained.best_params)
        )
        unweighted_outputs = predict_holdout(plain.pipeline, holdout, config, threads)

    # evaluate: the candidate and the champion on the same holdout rows
    evaluated = evaluate_model(trained.pipeline, holdout, config, threads)
    champion_score = (
        score_champion(champion.pipeline, holdout, config, threads) if champion else None
    )
    comparison = compare_with_champion(
        evaluated.metrics, champion_score.metrics if champion_score else None
    )
    importance = explain_model(trained.pipeline, holdout, config, threads)
    reference = build_reference_data(
        train, holdout, trained.pipeline, config, evaluated.metrics, config_path, importance.table
    )
    lineage = record_lineage(
        config, fingerprints, rows.source, mode.value, parent, run_id, rows.log
    )
    model_file = serialize_model(trained.pipeline)
    compiled = (
        compile_model(trained.pipeline, holdout, config, threads)
        if config.model.compile.enabled
        else None
    )

    # gate: the evidence, the verdict, and the reviewer when the policy asks for one
    non_inferiority = measure_non_inferiority(holdout, evaluated.outputs, champion_score, config)
    metric_intervals = measure_metric_intervals(holdout, evaluated.outputs, config)
    fairness = assess_fairness(holdout, evaluated.outputs, config)
    fairness_unweighted = (
        assess_fairness(holdout, unweighted_outputs, config) if unweighted_outputs else None
    )
    robustness = assess_robustness(trained.pipeline, holdout, config, threads)
    budgets = measure_budgets(trained.pipeline, holdout, config, len(model_file[0]), threads)
    fidelity = measure_fidelity(evaluated.outputs, champion_score, config) if distilling else None
    gate = judge(
        evaluated, non_inferiority, fairness, robustness, budgets, config, parent, fidelity
    )
    distillation = None
    if distilled is not None:  # the teacher measured in this run, beside its student
        teacher_file = serialize_model(champion.pipeline)
        teacher_budgets = measure_budgets(
            champion.pipeline, holdout, config, len(teacher_file[0]), threads
        )
        distillation = distillation_record(
            distilled, fidelity, evaluated.metrics, budgets, champion_score, teacher_budgets, config
        )
    publish_gate_report(config.name, run_id, gate)
    if gate.outcome == "needs_approval":
        gate = request_approval(config.name, gate, config.gate.approval)

    # record: one record of the run, then its folder, its version, and the champion alias
    run = collect_training_run(
        config=config,
        run_id=run_id,
        mode=mode,
        parent_version=parent,
        lineage=lineage,
        fingerprints=fingerprints,
        profile=profile,
        cleaning=cleaning,
        trained=trained,
        model_file=model_file,
        evaluated=evaluated,
        champion_score=champion_score,
        comparison=comparison,
        metric_intervals=metric_intervals,
        non_inferiority=non_inferiority,
        fairness=fairness,
        fairness_unweighted=fairness_unweighted,
        robustness=robustness,
        budgets=budgets,
        importance=importance,
        gate=gate,
        reference_files=reference,
        distillation=distillation,
        compiled=compiled,
    )
    reconcile_run_folders(settings.artifact_store, settings.registry_url, config.name)
    folder = write_run_folder(settings.artifact_store, run)
    version = register_version(settings.registry_url, run.registration(folder), gate.passed, actor)
    confirm_run_folder(settings.artifact_store, folder)
    if gate.approval is not None:
        record_approval(settings.registry_url, version, gate.approval)
    if gate.passed and parent is not None and config.gate.after_pass == "shadow":
        start_shadow(settings.registry_url, version, actor)  # the experiment flow decides
    elif gate.passed and not (
        config.gate.min_ml_test_score is not None
        and held_by_test_score(settings.registry_url, config.name, version.version, actor)
    ):  # only over the champion the gate judged against (compare and swap)
        version = promote_champion(
            settings.registry_url, version, actor, run.promotion_reason, judged_against=parent
        )
    publish_report(run, version, folder.uri)
    publish_card(config.name, render_version_card(settings.registry_url, version))
    return run.outcome(version, folder.uri)


if __name__ == "__main__":
    from flows._deployment import deployment_parameters

    training(config_path=deployment_parameters("training")["config_path"])

"""The training flow: prepare -> train or fine-tune -> evaluate -> gate -> register -> promote."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from modelcycle.config import TrainingOverrides
from modelcycle.report import training_summary
from modelcycle.settings import get_settings
from tasks.artifacts import MODEL_FILE, RunContents, publish_report, write_run_folder
from tasks.data import (
    clean_data,
    fingerprint_data,
    load_data,
    load_pipeline_config,
    profile_data,
    split_data,
    validate_data,
)
from tasks.evaluation import apply_gate, compare_with_champion, evaluate_model, score_champion
from tasks.lineage import record_lineage, serialize_model
from tasks.monitoring import build_reference_data
from tasks.registry import load_champion, promote_champion, register_version
from tasks.training import fine_tune_model, train_model


class TrainingMode(StrEnum):
    scratch = "scratch"
    fine_tune = "fine_tune"


@flow(
    name="training", description="Train (or fine-tune) a model, gate it, register it, promote it."
)
def training(
    config_path: str = "configs/demo.yaml",
    mode: TrainingMode = TrainingMode.scratch,
    overrides: TrainingOverrides | None = None,
    actor: str = "training-flow",
) -> dict[str, Any]:
    """Run one model pipeline from its YAML config.

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

    if mode is TrainingMode.fine_tune:
        result = fine_tune_model(champion.pipeline, train, config, settings.training_threads)
    else:
        result = train_model(train, config, settings.training_threads)

    evaluated = evaluate_model(result.pipeline, test, config)
    champion_metrics = score_champion(champion.pipeline, test, config) if champion else None
    comparison = compare_with_champion(evaluated.metrics, champion_metrics)
    decision = apply_gate(evaluated.metrics, config).to_dict()

    reference = build_reference_data(
        train, test, result.pipeline, config, evaluated.metrics, config_path
    )
    lineage = record_lineage(config, fingerprints, source, mode.value, parent, run_id)
    model_bytes, model_sha256 = serialize_model(result.pipeline)
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
        figures=evaluated.figures,
        metadata={**lineage, "model_file": MODEL_FILE, "model_sha256": model_sha256},
        reference_files=reference,
    )
    folder = write_run_folder(settings.artifact_store, config.name, run_id, contents)

    version = register_version(
        settings.registry_url,
        {
            "model_name": config.name,
            "owner": config.owner,
            "description": config.description,
            "run_id": run_id,
            "artifact_uri": folder.uri,
            "model_file": MODEL_FILE,
            "model_sha256": model_sha256,
            "data_fingerprint": fingerprints["train"],
            "config_hash": lineage["config_hash"],
            "code_version": lineage["code_version"],
            "package_versions": lineage["package_versions"],
            "parent_version": parent,
            "metrics": evaluated.metrics,
            "gate": decision,
        },
        decision["passed"],
        actor,
    )
    if decision["passed"]:
        version = promote_champion(settings.registry_url, version, actor)

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
    return {
        "model": config.name,
        "version": version.version,
        "status": str(version.status),
        "primary_metric": config.evaluation.primary_metric,
        "metrics": evaluated.metrics,
        "champion_metrics": champion_metrics,
        "parent_version": parent,
        "gate": decision["decision"],
        "run_folder": folder.uri,
    }


if __name__ == "__main__":
    training()

"""Monitoring steps: each task is one step or one side effect."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.events import emit_event
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from modelcycle import monitoring
from modelcycle.artifacts import ArtifactStore, RunFolder, load_model
from modelcycle.config import (
    Monitoring,
    PipelineConfig,
    TimeRange,
    load_monitoring_section,
    parse_config,
)
from modelcycle.errors import RegistryError
from modelcycle.monitoring import (
    DRIFT_EVENT,
    ColumnDrift,
    Decision,
    DriftResult,
    Finding,
    Quality,
    Reference,
    SampledReport,
    Window,
    sampled_html_report,
)
from modelcycle.registry import IncidentLog, ModelVersion, Registry, Severity
from modelcycle.reports import HTML_REPORT, MonitoringRun
from modelcycle.utils import json_ready
from tasks.common import TASK_OPTIONS

# --- at training time ---------------------------------------------------------------------


@task(name="build-reference", **TASK_OPTIONS)
def build_reference_data(
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    pipeline: Pipeline,
    config: PipelineConfig,
    holdout_metrics: dict[str, float],
    config_path: str,
    importance: pd.DataFrame | None = None,
) -> dict[str, bytes]:
    """The files monitoring will compare windows with, stored in the version's run folder,
    with the permutation importance that weighs drift by what the model uses."""
    reference = monitoring.build_reference(
        train, holdout, pipeline, config, holdout_metrics, config_path, importance
    )
    get_run_logger().info(
        "Monitoring reference: %d of %d training rows", len(reference.data), len(train)
    )
    return reference.files()


# --- monitoring ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Monitored:
    """The champion under watch: its record, model, reference and config."""

    version: ModelVersion
    pipeline: Pipeline
    reference: Reference
    config: PipelineConfig


def _monitoring_section(path: str, model: str) -> Monitoring:
    return load_monitoring_section(path, model)


@task(name="load-monitored-champion", **TASK_OPTIONS)
def load_monitored_champion(
    model_name: str, registry_url: str, store_root: str, config_path: str | None
) -> Monitored:
    """The champion, its model file and its reference, each checked against recorded hashes.

    The config is the one recorded with the version (the schema it was trained on); a
    `config_path` replaces only its `monitoring` section, so thresholds can be tuned without
    retraining.
    """
    record = Registry(registry_url).champion(model_name)
    if record is None:
        raise RegistryError(
            f"model {model_name!r} has no champion to monitor; train and promote one first"
        )
    store, run_id = ArtifactStore(store_root), record.run_id
    manifest = store.read_manifest(model_name, run_id)
    missing = [f for f in monitoring.REFERENCE_FILES if f not in manifest["files"]]
    if missing:
        raise RegistryError(
            f"{model_name} v{record.version} has no monitoring reference ({', '.join(missing)} "
            f"missing from {record.artifact_uri}); it was trained before monitoring existed: "
            "retrain it"
        )
    files = {
        name: store.read_verified(model_name, run_id, name, manifest)
        for name in monitoring.REFERENCE_FILES
    }
    config = parse_config(manifest["config"], f"{record.artifact_uri}/manifest.json (config)")
    if config_path is not None:
        section = _monitoring_section(config_path, model_name)
        config = config.model_copy(update={"monitoring": section})
    pipeline = load_model(record.model_location, record.model_sha256)
    get_run_logger().info("Monitoring %s v%d", model_name, record.version)
    return Monitored(record, pipeline, Reference.from_files(files), config)


@task(name="load-window", **TASK_OPTIONS)
def load_window(
    pattern: str,
    home: Path,
    config: PipelineConfig,
    time_range: TimeRange | None,
    latest_only: bool,
) -> Window:
    pattern = monitoring.resolve_pattern(pattern, home)
    files = monitoring.window_files(pattern, latest_only)
    window = monitoring.read_window(files, config, time_range, pattern)
    get_run_logger().info("Window: %d rows from %d file(s)", len(window.table), len(files))
    return window


@task(name="check-window", **TASK_OPTIONS)
def check_window(window: Window, config: PipelineConfig) -> list[Finding]:
    findings = monitoring.check_window(window, config)
    for finding in findings:
        get_run_logger().warning("%s: %s", finding.severity, finding.message)
    return findings


@dataclass(frozen=True)
class Scored:
    inputs: pd.DataFrame
    outputs: pd.DataFrame
    proba: np.ndarray | None
    classes: np.ndarray | None


@task(name="score-window", **TASK_OPTIONS)
def score_window(
    pipeline: Pipeline, window: Window, config: PipelineConfig, threads: int
) -> Scored:
    """The champion's outputs on the window, from the features typed as in training; the
    thread cap is training's (all cores but one), which also holds for tree prediction."""
    inputs = monitoring.model_inputs(window.table, config)
    with threadpool_limits(limits=threads):
        raw = monitoring.score(pipeline, inputs, config)
    outputs = monitoring.model_outputs_from(raw, config)
    return Scored(inputs, outputs, raw.proba, raw.classes)


@task(name="feature-drift", **TASK_OPTIONS)
def measure_feature_drift(
    reference: Reference, inputs: pd.DataFrame, config: PipelineConfig
) -> DriftResult:
    result = monitoring.feature_drift(reference, inputs, config)
    weighted = result.weighted_share
    get_run_logger().info(
        "Feature drift: %d of %d drifted %s (%s of the importance)",
        len(result.drifted_columns),
        len(result.tested),
        result.drifted_columns,
        "not recorded" if weighted is None else f"{weighted:.1%}",
    )
    return result


@task(name="prediction-drift", **TASK_OPTIONS)
def measure_prediction_drift(
    reference: Reference, outputs: pd.DataFrame, config: PipelineConfig
) -> ColumnDrift:
    return monitoring.prediction_drift(reference, outputs, config)


@task(name="quality", **TASK_OPTIONS)
def measure_quality(
    window: Window, scored: Scored, reference: Reference, config: PipelineConfig
) -> Quality:
    return monitoring.assess_quality(
        window, scored.outputs, scored.proba, scored.classes, reference, config
    )


@task(name="decide-status", **TASK_OPTIONS)
def decide_status(
    features: DriftResult,
    prediction: ColumnDrift | None,
    quality: Quality | None,
    findings: list[Finding],
    config: PipelineConfig,
) -> Decision:
    decision = monitoring.decide(features, prediction, quality, findings, config)
    get_run_logger().info("Status %s: %s", decision.status, "; ".join(decision.reasons))
    return decision


@task(name="no-verdict", **TASK_OPTIONS)
def no_verdict(window: Window, config: PipelineConfig) -> Decision | None:
    """A window too small to judge gets no verdict, and the run says why."""
    reason = monitoring.too_few_rows(len(window.table), config)
    if reason is None:
        return None
    get_run_logger().warning(reason)
    return Decision(monitoring.Status.no_verdict, [reason])


@task(name="html-report", **TASK_OPTIONS)
def build_html_report(
    champion: Monitored, inputs: pd.DataFrame, features: DriftResult, pattern: str
) -> SampledReport:
    """Evidently's report on a bounded sample; the verdicts were computed on all rows.

    Columns without values on one side (no verdict) are left out: Evidently refuses them.
    """
    reference, config = champion.reference, champion.config
    title = f"{champion.version.model_name} v{champion.version.version}, window {pattern}"
    kinds = monitoring.feature_kinds(config)
    if features.untested:
        title += f" (left out, no values: {', '.join(features.untested)})"
    return sampled_html_report(
        reference.data,
        inputs,
        {c: k for c, k in kinds.items() if c not in features.untested},
        monitoring.drift_rules(config),
        config.monitoring.drift_share,
        config.monitoring.html_sample_rows,
        config.split.seed,
        title,
    )


@task(name="write-monitoring-folder", **TASK_OPTIONS)
def write_monitoring_folder(
    store_root: str, run_id: str, monitoring_run: MonitoringRun
) -> RunFolder:
    """JSON evidence and the HTML report under `<store>/monitoring/<model>/<run id>`."""
    store = ArtifactStore(posixpath.join(store_root.rstrip("/"), "monitoring"))
    with store.open_run(monitoring_run.model, run_id) as run:
        for name, document in sorted(monitoring_run.documents().items()):
            run.write_json(name, json_ready(document))
        if monitoring_run.html is not None:
            run.write_text(HTML_REPORT, monitoring_run.html.html)
        folder = run.commit({"kind": "monitoring", **json_ready(monitoring_run.folder_metadata())})
    get_run_logger().info("Monitoring folder written: %s", folder.uri)
    return folder


@task(name="record-incidents", **TASK_OPTIONS)
def record_incidents(
    registry_url: str, monitoring_run: MonitoringRun, evidence_folder: str, actor: str
) -> list[dict[str, Any]]:
    """One incident per kind (drift, quality) while unresolved; a repeat adds an occurrence
    and a note to it."""
    log = IncidentLog(registry_url)
    version, decision = monitoring_run.champion, monitoring_run.decision
    summary = "; ".join(decision.reasons)
    recorded = []
    for kind in decision.incident_kinds:
        # A gate floor crossed in production is critical; a drift or a drop beyond what the
        # monitoring policy allows is high.
        severity = Severity(decision.severities.get(kind, Severity.HIGH))
        result = log.record(
            model_name=version.model_name,
            version=version.version,
            kind=kind,
            severity=severity,
            summary=summary,
            evidence_folder=evidence_folder,
            details=json_ready(monitoring_run.incident_details()),
            actor=actor,
        )
        verb = "opened" if result.opened else "updated"
        get_run_logger().warning("Incident #%d (%s) %s", result.incident.id, kind, verb)
        recorded.append(
            {
                "id": result.incident.id,
                "kind": kind,
                "opened": result.opened,
                "occurrences": result.incident.occurrences,
            }
        )
    return recorded


@task(name="emit-drift-event", **TASK_OPTIONS)
def emit_drift_event(payload: dict[str, Any]) -> str:
    """The event a retraining deployment's trigger listens for."""
    model = payload["model_name"]
    event = emit_event(
        event=DRIFT_EVENT,
        resource={
            "prefect.resource.id": f"modelcycle.model.{model}",
            "prefect.resource.name": model,
        },
        payload=json_ready(payload),
    )
    if event is None:
        raise RuntimeError(f"{DRIFT_EVENT} for {model} was not emitted (no events client)")
    get_run_logger().info("Emitted %s for %s (event %s)", DRIFT_EVENT, model, event.id)
    return str(event.id)


@task(name="publish-monitoring-report", **TASK_OPTIONS)
def publish_monitoring_report(
    monitoring_run: MonitoringRun,
    run_uri: str,
    incidents: list[dict[str, Any]],
    event_id: str | None,
) -> None:
    """Stable keys per model, so the UI shows every monitoring run as one history."""
    model = monitoring_run.model
    create_markdown_artifact(
        key=f"{model}-monitoring",
        markdown=monitoring_run.markdown(run_uri, incidents, event_id),
        description=f"Monitoring of {model}",
    )
    html_uri = monitoring_run.html_uri(run_uri)
    if html_uri is not None:
        link = html_uri if "://" in html_uri else Path(html_uri).resolve().as_uri()
        create_link_artifact(
            key=f"{model}-monitoring-report",
            link=link,
            link_text=html_uri,
            description=f"Evidently drift report of {model}'s latest monitoring window",
        )

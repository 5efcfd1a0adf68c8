"""Monitoring steps: each task is one step or one side effect."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)
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
from modelcycle.errors import DataError, RegistryError
from modelcycle.monitoring import (
    DRIFT_EVENT,
    ColumnDrift,
    Decision,
    DriftResult,
    Finding,
    LogWindow,
    ProductionReport,
    Quality,
    Reference,
    SampledReport,
    Window,
    WindowHistory,
    WindowRecord,
    sampled_html_report,
)
from modelcycle.registry import IncidentLog, ModelVersion, Registry, Severity, open_run
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
    retraining. The run folder is read where the registry recorded it (`artifact_uri`), its
    manifest checked against the registry first; `store_root` is not needed for that.
    """
    record = Registry(registry_url).champion(model_name)
    if record is None:
        raise RegistryError(
            f"model {model_name!r} has no champion to monitor; train and promote one first"
        )
    run = open_run(record)  # the manifest as registered, its config as hashed in training
    manifest = run.manifest
    missing = [f for f in monitoring.REFERENCE_FILES if f not in manifest["files"]]
    if missing:
        raise RegistryError(
            f"{model_name} v{record.version} has no monitoring reference ({', '.join(missing)} "
            f"missing from {record.artifact_uri}); it was trained before monitoring existed: "
            "retrain it"
        )
    files = {name: run.read(name) for name in monitoring.REFERENCE_FILES}
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
    with _beside_the_report():
        return monitoring.assess_quality(
            window, scored.outputs, scored.proba, scored.classes, reference, config
        )


def _beside_the_report() -> threadpool_limits:
    """One thread per numeric library while the report process builds its page on the other
    core: OpenBLAS's second thread spin-waits against it (at a million logged rows the
    quality step took 1.9 s instead of 1.3 s); even alone, two threads were slower there
    (1.6 s against 1.3 s)."""
    return threadpool_limits(limits=1)


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
    """Evidently's report on a bounded sample; the verdicts were computed on all rows. The
    page is built by the report process, so a flow that submits this task goes on measuring.

    Columns without values on one side (no verdict) are left out: Evidently refuses them.
    """
    reference, config = champion.reference, champion.config
    title = f"{champion.version.model_name} v{champion.version.version}, window {pattern}"
    kinds = monitoring.feature_kinds(config)
    if features.untested:
        title += f" (left out, no values: {', '.join(features.untested)})"
    render = partial(monitoring.report_process().render, warn=get_run_logger().warning)
    return sampled_html_report(
        reference.data,
        inputs,
        {c: k for c, k in kinds.items() if c not in features.untested},
        monitoring.drift_rules(config),
        config.monitoring.drift_share,
        config.monitoring.html_sample_rows,
        config.split.seed,
        title,
        render,
    )


def prepare_html_report() -> None:
    """Start the report process: it imports Evidently while the window is read."""
    monitoring.report_process().start()


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
        for name, figure in sorted(monitoring_run.figures.items()):
            run.write_figure(name, figure)
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
    if monitoring_run.production is not None:
        create_table_artifact(
            key=f"{model}-service-health",
            table=[json_ready(row.__dict__) for row in monitoring_run.production.service.rows],
            description=f"Latency, throughput and error rate of {model} per answering version "
            f"in the latest log window; plots in {run_uri}/plots",
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


# --- monitoring on the prediction log -----------------------------------------------------


def log_root() -> str:
    """Where the service writes its log (`MODELCYCLE_SERVE_LOG_ROOT`, default under home)."""
    from modelcycle.serving import read_settings

    return read_settings().resolved_log_root


def _retired_versions(registry_url: str, model_name: str) -> dict[int, str]:
    return {
        v.version: "(retired)"
        for v in Registry(registry_url).list_versions(model_name)
        if str(getattr(v.status, "value", v.status)) == "retired"
    }


@task(name="load-log-window", **TASK_OPTIONS)
def load_log_window(
    champion: Monitored,
    registry_url: str,
    home: Path,
    since: datetime | None,
    until: datetime | None,
) -> LogWindow:
    """The champion's model's prediction log between `since` and `until`; without `since`,
    from where the last monitoring run of the log stopped (the whole log the first time).
    The champion's classes come from its fitted model: nothing is scored again."""
    model = champion.version.model_name
    if since is None:
        since = WindowHistory(monitoring.history_path(home, model)).last_until()
    classes = getattr(champion.pipeline, "classes_", None)
    result = monitoring.read_log_window(
        log_root(),
        model,
        champion.config,
        None if classes is None else np.asarray(classes),
        since,
        until,
        retired=_retired_versions(registry_url, model),
    )
    get_run_logger().info(
        "Log window %s: %d rows, versions %s, %d labelled",
        result.window.pattern,
        len(result.window.table),
        result.facts()["versions"],
        int(result.traffic["label_time"].notna().sum()),
    )
    for finding in result.findings:
        get_run_logger().warning("%s: %s", finding.severity, finding.message)
    return result


@task(name="logged-outputs", **TASK_OPTIONS)
def logged_outputs(log_window: LogWindow, champion: Monitored) -> tuple[Scored, Window]:
    """What the service answered, in place of scoring: the rows the champion answered when it
    answered any (a window spanning a promotion mixes two models' outputs), else all rows."""
    config = champion.config
    mine = (log_window.traffic["version"] == champion.version.version).to_numpy()
    if not mine.any():
        mine = np.ones(len(mine), dtype=bool)
    table, outputs = log_window.window.table, log_window.outputs
    if not mine.all():  # a copy of every column, only where another version answered too
        table, outputs = table[mine].reset_index(drop=True), outputs[mine].reset_index(drop=True)
    window = Window(
        table=table,
        pattern=log_window.window.pattern,
        files=log_window.window.files,
        rows_read=log_window.window.rows_read,
        unexpected_columns=[],
        time_range=log_window.window.time_range,
    )
    proba = None if log_window.proba is None else log_window.proba[mine]
    scored = Scored(
        monitoring.model_inputs(window.table, config),
        outputs,
        proba,
        log_window.classes,
    )
    return scored, window


def _estimator(champion: Monitored):
    """The label-free estimate of the champion's calibration, for any logged outputs."""
    classes = getattr(champion.pipeline, "classes_", None)
    classes = None if classes is None else np.asarray(classes)

    def estimate(outputs: pd.DataFrame) -> dict[str, float] | None:
        return monitoring.estimate_outputs(
            outputs, classes, champion.config, champion.reference.calibration
        )

    return estimate


@task(name="measure-production", **TASK_OPTIONS)
def measure_production(
    log_window: LogWindow, champion: Monitored, quality: Quality | None
) -> ProductionReport:
    """Per-version figures, labels and delays, service health and fairness of one window;
    the monitored version's realised figures are the quality step's, measured on its rows."""
    with _beside_the_report():
        return _measure_production(log_window, champion, quality)


def _measure_production(
    log_window: LogWindow, champion: Monitored, quality: Quality | None
) -> ProductionReport:
    config = champion.config
    estimate = _estimator(champion)
    # The quality step measured the monitored version on exactly its rows when it answered any.
    known, estimated = {}, {}
    if quality is not None and champion.version.version in log_window.version_rows:
        estimated[champion.version.version] = quality.estimated
        if quality.realised is not None and quality.intervals is not None:
            known[champion.version.version] = (quality.realised, quality.intervals)
    versions = monitoring.version_summaries(log_window, estimate, config, known, estimated)
    labels = monitoring.label_report(log_window, estimate, config)
    limits = config.monitoring.service
    metrics = monitoring.read_service_metrics(limits.metrics_url, champion.version.model_name)
    if metrics.note and limits.metrics_url:
        get_run_logger().warning(metrics.note)
    health = monitoring.service_health(log_window, limits, metrics)
    confidence = config.monitoring.quality_interval.confidence
    fairness = monitoring.production_fairness(log_window, config, confidence)
    return ProductionReport(versions, labels, health, fairness)


def _window_record(
    run_id: str,
    log_window: LogWindow,
    champion: Monitored,
    production: ProductionReport,
    status: str,
    features: DriftResult | None,
    now: str,
) -> WindowRecord:
    return WindowRecord(
        run_id=run_id,
        since=None if log_window.since is None else log_window.since.isoformat(),
        until=log_window.until.isoformat(),
        monitored_version=champion.version.version,
        status=status,
        versions={str(v.version): json_ready(v.to_dict()) for v in production.versions},
        recorded_at=now,
        updated_at=now,
        service=[json_ready(r.__dict__) for r in production.service.rows],
        fairness={
            column: [json_ready(g.__dict__) for g in groups]
            for column, groups in (
                production.fairness.groups if production.fairness else {}
            ).items()
        },
        drift={c.column: c.score for c in features.columns} if features else {},
    )


@task(name="backfill-and-record-window", **TASK_OPTIONS)
def backfill_and_record(
    run_id: str,
    home: Path,
    log_window: LogWindow,
    champion: Monitored,
    production: ProductionReport,
    decision: Decision,
    features: DriftResult | None,
) -> ProductionReport:
    """Recompute the realised figures of earlier windows whose labels arrived since they were
    reported (at most `monitoring.backfill_windows` of them), then record this window: the
    report shows estimate against realised quality over time, and the next scheduled run
    starts where this one stopped."""
    model, config = champion.version.model_name, champion.config
    history = WindowHistory(monitoring.history_path(home, model))
    earlier = history.load()
    now = datetime.now(UTC).isoformat()
    estimate = _estimator(champion)
    classes = getattr(champion.pipeline, "classes_", None)
    updated, backfilled = [], []
    for record in monitoring.due_for_backfill(earlier, config.monitoring.backfill_windows):
        try:
            again = monitoring.read_log_window(
                log_root(),
                model,
                config,
                None if classes is None else np.asarray(classes),
                None if record.since is None else datetime.fromisoformat(record.since),
                datetime.fromisoformat(record.until),
            )
        except DataError as exc:  # compacted away, or damaged since: keep what was recorded
            get_run_logger().warning("Back-fill of %s skipped: %s", record.run_id, exc)
            continue
        summaries = monitoring.version_summaries(again, estimate, config)
        if sum(s.labelled for s in summaries) > record.labelled():
            for summary in summaries:
                before = record.versions.get(str(summary.version), {})
                fresh = json_ready(summary.to_dict())
                fresh["estimated"] = before.get("estimated", fresh["estimated"])
                record.versions[str(summary.version)] = fresh
            record.updated_at = now
            record.backfills += 1
            updated.append(record)
            backfilled.append(
                f"window {monitoring.describe_range(again.since, again.until)} (run "
                f"{record.run_id}): {record.labelled()} labelled rows now, realised figures "
                "back-filled"
            )
    new = _window_record(
        run_id, log_window, champion, production, decision.status.value, features, now
    )
    records = history.record(new, updated)
    for line in backfilled:
        get_run_logger().info(line)
    return replace(
        production,
        history=[json_ready(r.__dict__) for r in records[-30:]],
        backfilled=backfilled,
    )


@task(name="judge-production", **TASK_OPTIONS)
def judge_production(decision: Decision, production: ProductionReport) -> Decision:
    judged = monitoring.judge_production(decision, production)
    if judged is not decision:
        get_run_logger().info("Status %s: %s", judged.status, "; ".join(judged.reasons))
    return judged


@task(name="rollback-due", **TASK_OPTIONS)
def rollback_due(
    registry_url: str, champion: Monitored, production: ProductionReport
) -> str | None:
    """The reason for an automatic rollback, when a service breach comes within
    `monitoring.service.rollback_within_hours` of the champion's promotion; else None."""
    hours = champion.config.monitoring.service.rollback_within_hours
    if hours is None or not production.service.breaches:
        return None
    registry = Registry(registry_url)
    version = champion.version
    moves = [
        e
        for e in registry.audit_log(version.model_name)
        if e.action in ("promote", "rollback") and e.version == version.version
    ]
    if not moves:
        return None
    promoted = max(e.at for e in moves)
    promoted = promoted if promoted.tzinfo else promoted.replace(tzinfo=UTC)
    age = (datetime.now(UTC) - promoted).total_seconds() / 3600
    if age > hours:
        get_run_logger().info(
            "Service breach %.1f h after v%d's promotion, beyond rollback_within_hours %g: "
            "no automatic rollback",
            age,
            version.version,
            hours,
        )
        return None
    return (
        f"automatic rollback by monitoring: {'; '.join(production.service.breaches)} "
        f"within {age:.1f} h of v{version.version}'s promotion "
        f"(monitoring.service.rollback_within_hours {hours:g})"
    )

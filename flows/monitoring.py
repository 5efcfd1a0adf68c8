"""The monitoring flow: the champion's view of a production window, and what follows from it.

load champion + reference -> load window (files, or the prediction log) -> schema findings ->
score (files only: the log holds what the service answered) -> feature drift (Evidently's
HTML built from here on, in its own process, while the flow goes on) -> prediction
drift -> quality (realised and estimated) -> [log: per-version figures, labels and delays,
service health, fairness, back-filled history] -> status -> evidence folder (JSON + Evidently
HTML + plots) -> incidents -> drift event -> [automatic rollback] -> Prefect artifacts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from prefect import flow
from prefect.runtime import flow_run

from flows.governance import rollback
from modelcycle.config import TimeRange
from modelcycle.settings import get_settings
from tasks.monitoring import (
    backfill_and_record,
    build_html_report,
    check_window,
    decide_status,
    emit_drift_event,
    judge_production,
    load_log_window,
    load_monitored_champion,
    load_window,
    logged_outputs,
    measure_feature_drift,
    measure_prediction_drift,
    measure_production,
    measure_quality,
    no_verdict,
    prepare_html_report,
    publish_monitoring_report,
    record_incidents,
    rollback_due,
    score_window,
    write_monitoring_folder,
)
from tasks.reports import collect_monitoring_run


@flow(
    name="monitoring",
    description="Compare a production window with the champion's reference; flag drift.",
)
def monitoring(
    model_name: str,
    window: str | None = None,
    time_range: TimeRange | None = None,
    latest_only: bool = False,
    config_path: str | None = None,
    actor: str = "monitoring-flow",
    source: Literal["file", "log"] = "file",
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    """Check one window of production data against the champion of `model_name`.

    Args:
        model_name: The model whose champion is monitored.
        window: With `source="file"`: a CSV/Parquet file or a glob of them; relative paths
            resolve against the modelcycle home folder (`MODELCYCLE_HOME`) when they do not
            exist as given.
        time_range: Keep only rows whose time column falls in this range (both ends included).
        latest_only: Check only the newest matching file (by name), as a daily schedule does.
        config_path: Take the `monitoring` thresholds from this config instead of the ones
            recorded with the champion.
        actor: Who is recorded on incidents this run opens or updates.
        source: `file` reads `window`; `log` reads the model's prediction log (what the
            service answered, never scored again) between `since` and `until`.
        since: First logged time in a log window (UTC if no zone); empty: where the last
            monitoring run of the log stopped (the whole log the first time).
        until: End of a log window, excluded; empty: now.
    """
    if source == "log":
        return _monitor_log(model_name, since, until, config_path, actor)
    if window is None:
        raise ValueError("window: a file or glob is needed when source is 'file'")
    settings, run_id = get_settings(), flow_run.id

    # read: the champion with its reference, and the window (Evidently imports meanwhile)
    prepare_html_report()
    champion = load_monitored_champion(
        model_name, settings.registry_url, settings.artifact_store, config_path
    )
    config = champion.config
    data = load_window(window, settings.home, config, time_range, latest_only)
    findings = check_window(data, config)

    # measure: drift (its report built meanwhile) and quality, unless the window is too small
    # for a verdict
    decision = no_verdict(data, config)
    features = prediction = quality = html = None
    if decision is None:
        scored = score_window(champion.pipeline, data, config, settings.training_threads)
        features = measure_feature_drift(champion.reference, scored.inputs, config)
        report = build_html_report.submit(champion, scored.inputs, features, data.pattern)
        prediction = measure_prediction_drift(champion.reference, scored.outputs, config)
        quality = measure_quality(data, scored, champion.reference, config)
        decision = decide_status(features, prediction, quality, findings, config)
        html = report.result()

    # record: one record of the run, then its evidence, incidents, event and report
    run = collect_monitoring_run(
        champion, data, findings, decision, features, prediction, quality, html
    )
    folder = write_monitoring_folder(settings.artifact_store, run_id, run)
    incidents = record_incidents(settings.registry_url, run, folder.uri, actor)
    event_id = emit_drift_event(run.event_payload(folder.uri, incidents)) if run.drifted else None
    publish_monitoring_report(run, folder.uri, incidents, event_id)
    return run.outcome(folder.uri, incidents, event_id)


def _monitor_log(
    model_name: str,
    since: datetime | None,
    until: datetime | None,
    config_path: str | None,
    actor: str,
) -> dict[str, Any]:
    """The same story on the prediction log: the logged outputs stand in for scoring, and the
    log's own facts (versions, labels, latency, groups) are judged beside drift."""
    settings, run_id = get_settings(), flow_run.id

    # read: the champion with its reference, and the log window with its feedback (Evidently
    # imports meanwhile, in the report process)
    prepare_html_report()
    champion = load_monitored_champion(
        model_name, settings.registry_url, settings.artifact_store, config_path
    )
    config = champion.config
    logged = load_log_window(champion, settings.registry_url, settings.home, since, until)
    data, findings = logged.window, logged.findings

    # measure: drift on every row's inputs (its report built meanwhile), quality on the
    # champion's own answers
    decision = no_verdict(data, config)
    features = prediction = quality = html = report = None
    if decision is None:
        scored, answered = logged_outputs(logged, champion)
        features = measure_feature_drift(champion.reference, scored.inputs, config)
        report = build_html_report.submit(champion, scored.inputs, features, data.pattern)
        prediction = measure_prediction_drift(champion.reference, scored.outputs, config)
        quality = measure_quality(answered, scored, champion.reference, config)
        decision = decide_status(features, prediction, quality, findings, config)
    production = measure_production(logged, champion, quality)
    decision = judge_production(decision, production)
    production = backfill_and_record(
        run_id, settings.home, logged, champion, production, decision, features
    )
    html = None if report is None else report.result()

    # record: evidence, incidents, event, an automatic rollback if due, and the report
    run = collect_monitoring_run(
        champion,
        data,
        findings,
        decision,
        features,
        prediction,
        quality,
        html,
        production,
        log_range=(logged.since, logged.until),
    )
    folder = write_monitoring_folder(settings.artifact_store, run_id, run)
    incidents = record_incidents(settings.registry_url, run, folder.uri, actor)
    event_id = emit_drift_event(run.event_payload(folder.uri, incidents)) if run.drifted else None
    reason = rollback_due(settings.registry_url, champion, production)
    rolled_back = None
    if reason is not None:
        rolled_back = rollback(model_name, f"{reason}; evidence {folder.uri}", actor)
    publish_monitoring_report(run, folder.uri, incidents, event_id)
    return {**run.outcome(folder.uri, incidents, event_id), "rollback": rolled_back}


if __name__ == "__main__":
    from flows._deployment import deployment_parameters

    monitoring(**deployment_parameters("monitoring"))

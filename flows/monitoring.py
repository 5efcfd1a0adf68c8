"""The monitoring flow: the champion's view of a production window, and what follows from it.

load champion + reference -> load window -> schema findings -> score -> feature drift ->
prediction drift -> quality (realised and estimated) -> status -> evidence folder (JSON +
Evidently HTML) -> incident -> drift event -> Prefect artifacts.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from modelcycle.config import TimeRange
from modelcycle.settings import get_settings
from tasks.monitoring import (
    build_html_report,
    check_window,
    decide_status,
    emit_drift_event,
    load_monitored_champion,
    load_window,
    measure_feature_drift,
    measure_prediction_drift,
    measure_quality,
    no_verdict,
    publish_monitoring_report,
    record_incidents,
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
    window: str,
    time_range: TimeRange | None = None,
    latest_only: bool = False,
    config_path: str | None = None,
    actor: str = "monitoring-flow",
) -> dict[str, Any]:
    """Check one window of production data against the champion of `model_name`.

    Args:
        model_name: The model whose champion is monitored.
        window: A CSV/Parquet file or a glob of them; relative paths resolve against the
            modelcycle home folder (`MODELCYCLE_HOME`) when they do not exist as given (the
            daily deployment names the demo's glob).
        time_range: Keep only rows whose time column falls in this range (both ends included).
        latest_only: Check only the newest matching file (by name), as a daily schedule does.
        config_path: Take the `monitoring` thresholds from this config instead of the ones
            recorded with the champion.
        actor: Who is recorded on incidents this run opens or updates.
    """
    settings, run_id = get_settings(), flow_run.id

    # read: the champion with its reference, and the window
    champion = load_monitored_champion(
        model_name, settings.registry_url, settings.artifact_store, config_path
    )
    config = champion.config
    data = load_window(window, settings.home, config, time_range, latest_only)
    findings = check_window(data, config)

    # measure: drift and quality, unless the window is too small for a verdict
    decision = no_verdict(data, config)
    features = prediction = quality = html = None
    if decision is None:
        scored = score_window(champion.pipeline, data, config, settings.training_threads)
        features = measure_feature_drift(champion.reference, scored.inputs, config)
        prediction = measure_prediction_drift(champion.reference, scored.outputs, config)
        quality = measure_quality(data, scored, champion.reference, config)
        decision = decide_status(features, prediction, quality, findings, config)
        html = build_html_report(champion, scored.inputs, features, data.pattern)

    # record: one record of the run, then its evidence, incidents, event and report
    run = collect_monitoring_run(
        champion, data, findings, decision, features, prediction, quality, html
    )
    folder = write_monitoring_folder(settings.artifact_store, run_id, run)
    incidents = record_incidents(settings.registry_url, run, folder.uri, actor)
    event_id = emit_drift_event(run.event_payload(folder.uri, incidents)) if run.drifted else None
    publish_monitoring_report(run, folder.uri, incidents, event_id)
    return run.outcome(folder.uri, incidents, event_id)


if __name__ == "__main__":
    from flows._deployment import deployment_parameters

    monitoring(**deployment_parameters("monitoring"))

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
from modelcycle.reports import monitoring_markdown
from modelcycle.settings import get_settings
from tasks.monitoring import (
    HTML_REPORT,
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

DEFAULT_WINDOW = "data/windows/*.parquet"


@flow(
    name="monitoring",
    description="Compare a production window with the champion's reference; flag drift.",
)
def monitoring(
    model_name: str = "gss-income",
    window: str = DEFAULT_WINDOW,
    time_range: TimeRange | None = None,
    latest_only: bool = False,
    config_path: str | None = None,
    actor: str = "monitoring-flow",
) -> dict[str, Any]:
    """Check one window of production data against the champion of `model_name`.

    Args:
        model_name: The model whose champion is monitored.
        window: A CSV/Parquet file or a glob of them; relative paths resolve against the
            modelcycle home folder (`MODELCYCLE_HOME`) when they do not exist as given.
        time_range: Keep only rows whose time column falls in this range (both ends included).
        latest_only: Check only the newest matching file (by name), as a daily schedule does.
        config_path: Take the `monitoring` thresholds from this config instead of the ones
            recorded with the champion.
        actor: Who is recorded on incidents this run opens or updates.
    """
    settings = get_settings()
    run_id = flow_run.id
    champion = load_monitored_champion(
        model_name, settings.registry_url, settings.artifact_store, config_path
    )
    config = champion.config
    data = load_window(window, settings.home, config, time_range, latest_only)
    pattern = data.pattern
    findings = check_window(data, config)
    window_facts = data.facts()
    version = champion.version.version

    decision = no_verdict(data, config)
    features = prediction = quality = html = None
    if decision is None:
        scored = score_window(champion.pipeline, data, config, settings.training_threads)
        features = measure_feature_drift(champion.reference, scored.inputs, config)
        prediction = measure_prediction_drift(champion.reference, scored.outputs, config)
        quality = measure_quality(data, scored, champion.reference, config)
        decision = decide_status(features, prediction, quality, findings, config)
        title = f"{model_name} v{version}, window {pattern}"
        html = build_html_report(champion.reference, scored.inputs, features, config, title)

    documents = {
        "window.json": window_facts,
        "decision.json": decision.to_dict(),
        "findings.json": [f.to_dict() for f in findings],
        "drift.json": {
            "features": features.to_dict() if features else None,
            "prediction": prediction.to_dict() if prediction else None,
        },
        "quality.json": quality.to_dict() if quality else None,
        "html_sample.json": html.facts() if html else None,
    }
    folder = write_monitoring_folder(
        settings.artifact_store,
        model_name,
        run_id,
        documents,
        html,
        {"monitored_version": version, "status": decision.status.value},
    )

    details = {"drifted_columns": features.drifted_columns if features else [], **window_facts}
    incidents = record_incidents(
        settings.registry_url, champion.version, decision, folder.uri, details, actor
    )
    event_id = None
    if decision.status == "drift":
        event_id = emit_drift_event(
            {
                "model_name": model_name,
                "version": version,
                "window": pattern,
                "drifted_columns": features.drifted_columns if features else [],
                "status": decision.status.value,
                "config_path": champion.reference.meta["config_path"],
                "retrain_mode": config.monitoring.retrain_mode,
                "share_drifted": features.share_drifted if features else None,
                "reasons": decision.reasons,
                "run_folder": folder.uri,
                "incident_ids": [i["id"] for i in incidents],
            }
        )
    markdown = monitoring_markdown(
        model=model_name,
        version=version,
        window=window_facts,
        decision=decision,
        features=features,
        prediction=prediction,
        quality=quality,
        findings=findings,
        run_uri=folder.uri,
        html_name=HTML_REPORT if html else None,
        html_sample=html.facts() if html else None,
        incidents=incidents,
        event_emitted=event_id is not None,
    )
    html_uri = f"{folder.uri.rstrip('/')}/{HTML_REPORT}" if html else None
    publish_monitoring_report(model_name, markdown, html_uri)
    return {
        "model": model_name,
        "version": version,
        "status": decision.status.value,
        "reasons": decision.reasons,
        "drifted_columns": features.drifted_columns if features else [],
        "share_drifted": features.share_drifted if features else None,
        "prediction_drifted": prediction.drifted if prediction else None,
        "quality": quality.to_dict() if quality else None,
        "findings": [f.to_dict() for f in findings],
        "run_folder": folder.uri,
        "html_report": html_uri,
        "incidents": incidents,
        "event_id": event_id,
    }


if __name__ == "__main__":
    monitoring()

"""One monitoring run's facts, collected once; the evidence folder, the incidents, the drift
event, the summary and the flow's answer are derived from them, so they cannot disagree."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from modelcycle.monitoring import (
    ColumnDrift,
    Decision,
    DriftResult,
    Finding,
    ProductionReport,
    Quality,
    SampledReport,
    Status,
)
from modelcycle.registry import ModelVersion
from modelcycle.reports._monitoring import monitoring_markdown
from modelcycle.reports._monitoring_plots import production_figures
from modelcycle.reports._monitoring_production import production_markdown

HTML_REPORT = "report.html"


@dataclass(frozen=True)
class MonitoringRun:
    """The champion's verdict on one window; the measurements are None when the window was too
    small to judge."""

    champion: ModelVersion
    window: dict[str, Any]  # what was read (Window.facts()), never the rows
    config_path: str  # the champion's training config, which a retraining run starts from
    retrain_mode: str
    decision: Decision
    findings: list[Finding]
    features: DriftResult | None
    prediction: ColumnDrift | None
    quality: Quality | None
    html: SampledReport | None
    production: ProductionReport | None = None  # prediction-log windows only
    # the retraining's `overrides` (monitoring.retrain_data): the labelled log as its data
    retrain_overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def model(self) -> str:
        return self.champion.model_name

    @property
    def version(self) -> int:
        return self.champion.version

    @property
    def drifted(self) -> bool:
        return self.decision.status == Status.drift

    @property
    def drifted_columns(self) -> list[str]:
        return self.features.drifted_columns if self.features else []

    def documents(self) -> dict[str, Any]:
        """The JSON files of the evidence folder."""
        return {
            "window.json": self.window,
            "decision.json": self.decision.to_dict(),
            "findings.json": [f.to_dict() for f in self.findings],
            "drift.json": {
                "features": self.features.to_dict() if self.features else None,
                "prediction": self.prediction.to_dict() if self.prediction else None,
            },
            "quality.json": self.quality.to_dict() if self.quality else None,
            "html_sample.json": self.html.facts() if self.html else None,
            **({"production.json": self._production()} if self.production else {}),
        }

    @cached_property
    def figures(self) -> dict[str, Any]:
        """PNG plots of the recent log windows, by file name (none for file windows); drawn
        once, for the evidence folder and the summary that links them."""
        return {} if self.production is None else production_figures(self.production)

    def _production(self) -> dict[str, Any] | None:
        if self.production is None:
            return None
        return {**self.production.to_dict(), "plots": sorted(self.figures)}

    def folder_metadata(self) -> dict[str, Any]:
        return {"monitored_version": self.version, "status": self.decision.status.value}

    def incident_details(self) -> dict[str, Any]:
        return {"drifted_columns": self.drifted_columns, **self.window}

    def html_uri(self, run_uri: str) -> str | None:
        return f"{run_uri.rstrip('/')}/{HTML_REPORT}" if self.html else None

    def event_payload(self, run_uri: str, incidents: list[dict[str, Any]]) -> dict[str, Any]:
        """What the retraining trigger reads: `config_path` and `retrain_mode` become its
        parameters (prefect.yaml)."""
        return {
            "model_name": self.model,
            "version": self.version,
            "window": self.window["pattern"],
            "drifted_columns": self.drifted_columns,
            "status": self.decision.status.value,
            "config_path": self.config_path,
            "retrain_mode": self.retrain_mode,
            "retrain_overrides": self.retrain_overrides,
            "share_drifted": self.features.share_drifted if self.features else None,
            "weighted_share": self.features.weighted_share if self.features else None,
            "reasons": self.decision.reasons,
            "run_folder": run_uri,
            "incident_ids": [i["id"] for i in incidents],
        }

    def markdown(self, run_uri: str, incidents: list[dict[str, Any]], event_id: str | None) -> str:
        return monitoring_markdown(
            model=self.model,
            version=self.version,
            window=self.window,
            decision=self.decision,
            features=self.features,
            prediction=self.prediction,
            quality=self.quality,
            findings=self.findings,
            run_uri=run_uri,
            html_name=HTML_REPORT if self.html else None,
            html_sample=self.html.facts() if self.html else None,
            incidents=incidents,
            event_emitted=event_id is not None,
            production=None
            if self.production is None
            else production_markdown(self.production, run_uri, sorted(self.figures)),
        )

    def outcome(
        self, run_uri: str, incidents: list[dict[str, Any]], event_id: str | None
    ) -> dict[str, Any]:
        """The flow's answer, which the CLI prints."""
        return {
            "model": self.model,
            "version": self.version,
            "status": self.decision.status.value,
            "reasons": self.decision.reasons,
            "drifted_columns": self.drifted_columns,
            "share_drifted": self.features.share_drifted if self.features else None,
            "weighted_share": self.features.weighted_share if self.features else None,
            "prediction_drifted": self.prediction.drifted if self.prediction else None,
            "quality": self.quality.to_dict() if self.quality else None,
            "findings": [f.to_dict() for f in self.findings],
            "run_folder": run_uri,
            "html_report": self.html_uri(run_uri),
            "incidents": incidents,
            "event_id": event_id,
            # What the event asked of the retraining (its payload), for whoever runs it by hand.
            "event": self.event_payload(run_uri, incidents) if event_id else None,
            "production": self._production(),
        }

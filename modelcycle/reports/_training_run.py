"""One training run's facts, collected once; every record the run leaves is derived from them.

The run folder, the registration, the card, the summary and the flow's answer all restate the
same facts: deriving them from one frozen record keeps them from drifting apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from modelcycle.artifacts import RunFolder, sha256_bytes
from modelcycle.config import PipelineConfig, TrainingMode
from modelcycle.data import CleaningReport
from modelcycle.gate import GateDecision, PairedInterval
from modelcycle.registry import ModelVersion, Registration
from modelcycle.reports._card import card_facts, render_card
from modelcycle.reports._training import training_summary
from modelcycle.training import COMPILED_FILE, CompileOutcome
from modelcycle.utils import json_ready

MODEL_FILE = "model.skops"
PROMOTION_REASON = "passed the gate in training"


@dataclass(frozen=True)
class RunContents:
    """Everything a training run writes to its folder."""

    model_bytes: bytes
    metrics: dict[str, float]
    champion_metrics: dict[str, float] | None
    comparison: dict[str, Any] | None
    slices: list[dict[str, Any]]
    gate: dict[str, Any]
    profile: dict[str, Any]
    cleaning: dict[str, Any]
    search_results: pd.DataFrame | None
    figures: dict[str, Figure]
    metadata: dict[str, Any]
    evidence: dict[str, Any] = field(default_factory=dict)  # file name -> JSON
    binary_files: dict[str, bytes] = field(default_factory=dict)  # e.g. the compiled form
    texts: dict[str, str] = field(default_factory=dict)  # file name -> text (card, CSV)
    # What monitoring compares windows with (modelcycle.monitoring.Reference.files()).
    reference_files: dict[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainingRun:
    """What one training run measured and decided, before the registry numbers the version.

    `non_inferiority` is the paired interval of (candidate - champion) the gate judges;
    `metric_intervals` are the candidate's own bootstrap intervals, shown on the card.
    """

    config: PipelineConfig
    run_id: str
    mode: TrainingMode
    parent_version: int | None
    lineage: dict[str, Any]
    fingerprints: dict[str, str]
    profile: dict[str, Any]
    cleaning: CleaningReport
    best_params: dict[str, Any]
    search_results: pd.DataFrame | None
    model_bytes: bytes
    model_sha256: str
    metrics: dict[str, float]
    champion_metrics: dict[str, float] | None
    comparison: dict[str, Any] | None
    slices: list[dict[str, Any]]
    figures: dict[str, Figure]
    metric_intervals: dict[str, dict[str, float]]
    non_inferiority: PairedInterval | None
    fairness: dict[str, Any]
    fairness_unweighted: dict[str, Any] | None
    robustness: dict[str, Any]
    budgets: dict[str, Any]
    importance: pd.DataFrame
    importance_figure: Figure
    gate: GateDecision
    reference_files: dict[str, bytes]
    # A distilled student's side of the comparison with its teacher (None for other modes).
    distillation: dict[str, Any] | None = None
    # The compiled form, when compilation was requested: its bytes (kept only when parity
    # passed) and the evidence (runtime, version, parity per set of rows, or why not).
    compiled: CompileOutcome | None = None

    @property
    def model(self) -> str:
        return self.config.name

    @property
    def rows(self) -> dict[str, int]:
        return {"train": self.profile["train"]["rows"], "holdout": self.profile["holdout"]["rows"]}

    def card_facts(self) -> dict[str, Any]:
        """JSON-ready: saved as card.json, from which every later card is rendered."""
        return json_ready(
            card_facts(
                config=self.config,
                run_id=self.run_id,
                lineage=self.lineage,
                fingerprints=self.fingerprints,
                rows=self.rows,
                mode=self.mode.value,
                best_params=self.best_params,
                metrics=self.metrics,
                intervals=self.metric_intervals,
                comparison=self.comparison,
                non_inferiority=self._non_inferiority(),
                slices=self.slices,
                fairness=self.fairness,
                fairness_unweighted=self.fairness_unweighted,
                robustness=self.robustness,
                budgets=self.budgets,
                importance=self.importance.to_dict(orient="records"),
                gate=self.gate.to_dict(),
                cleaning=self.cleaning.to_dict(),
                distillation=self.distillation,
                compiled=self._compiled_summary(),
            )
        )

    def contents(self) -> RunContents:
        facts = self.card_facts()
        return RunContents(
            model_bytes=self.model_bytes,
            metrics=self.metrics,
            champion_metrics=self.champion_metrics,
            comparison=self.comparison,
            slices=self.slices,
            gate=self.gate.to_dict(),
            profile=self.profile,
            cleaning=self.cleaning.to_dict(),
            search_results=self.search_results,
            figures={**self.figures, "permutation_importance.png": self.importance_figure},
            metadata={
                **self.lineage,
                "model_file": MODEL_FILE,
                "model_sha256": self.model_sha256,
                **({"compiled_form": self._compiled_summary()} if self.compiled else {}),
            },
            evidence={
                "metric_intervals.json": self.metric_intervals,
                "gate/non_inferiority.json": self._non_inferiority() or {"champion": None},
                "gate/fairness.json": {
                    "balanced": self.fairness,
                    "unbalanced": self.fairness_unweighted,
                },
                "gate/robustness.json": self.robustness,
                "gate/budgets.json": self.budgets,
                **({"compiled.json": self.compiled.evidence} if self.compiled else {}),
                **(
                    {"gate/fidelity.json": self.distillation["fidelity"]}
                    if self.distillation
                    else {}
                ),
                "card.json": facts,
            },
            texts={
                "importance.csv": self.importance.to_csv(index=False),
                "card.md": render_card(facts),
            },
            reference_files=self.reference_files,
            binary_files=(
                {COMPILED_FILE: self.compiled.data}
                if self.compiled is not None and self.compiled.data is not None
                else {}
            ),
        )

    def registration(self, folder: RunFolder) -> Registration:
        """The version as the committed folder anchors it: the registry keeps the manifest's
        hash, so every later read can tell the manifest was not edited."""
        return Registration(
            model_name=self.config.name,
            owner=self.config.owner,
            description=self.config.description,
            run_id=self.run_id,
            artifact_uri=folder.uri,
            manifest_sha256=folder.manifest_sha256,
            model_file=MODEL_FILE,
            model_sha256=self.model_sha256,
            data_fingerprint=self.fingerprints["train"],
            config_hash=self.lineage["config_hash"],
            code_version=self.lineage["code_version"],
            package_versions=self.lineage["package_versions"],
            parent_version=self.parent_version,
            metrics=json_ready(self.metrics),
            gate=json_ready(self.gate.to_dict()),
        )

    @property
    def promotion_reason(self) -> str:
        """Why the audit log says the candidate became champion: the reviewer, when one was
        asked."""
        if self.gate.approval:
            return f"passed the gate and approved by {self.gate.approval['reviewer']}"
        return PROMOTION_REASON

    def summary(self, version: ModelVersion, run_uri: str) -> str:
        return training_summary(
            model=self.config.name,
            version=version.version,
            status=str(version.status),
            mode=self.mode.value,
            parent_version=self.parent_version,
            metrics=self.metrics,
            comparison=self.comparison,
            gate=self.gate.to_dict(),
            slices=self.slices,
            primary_metric=self.config.evaluation.primary_metric,
            fingerprints=self.fingerprints,
            rows=self.rows,
            run_uri=run_uri,
            code_version=self.lineage["code_version"],
            config_hash=self.lineage["config_hash"],
            cleaning=self.cleaning.to_dict(),
            period=self.config.data.time_range.describe() if self.config.data.time_range else None,
        )

    def outcome(self, version: ModelVersion, run_uri: str) -> dict[str, Any]:
        """The flow's answer, which the CLI and the demo print."""
        return {
            "model": self.config.name,
            "version": version.version,
            "status": str(version.status),
            "primary_metric": self.config.evaluation.primary_metric,
            "metrics": self.metrics,
            "champion_metrics": self.champion_metrics,
            "parent_version": self.parent_version,
            "gate": self.gate.outcome,
            "approval": self.gate.approval,
            "non_inferiority": self._non_inferiority(),
            "failed_checks": [c.name for c in self.gate.checks if c.failed],
            "run_folder": run_uri,
        }

    def _compiled_summary(self) -> dict[str, Any] | None:
        """What the manifest and the card say about the compiled form; the file's SHA-256 is
        also in the manifest's file list, which is what serving verifies it against."""
        if self.compiled is None:
            return None
        evidence = self.compiled.evidence
        kept = self.compiled.data is not None
        return {
            "file": COMPILED_FILE if kept else None,
            "sha256": sha256_bytes(self.compiled.data) if kept else None,
            "kept": kept,
            "runtime": evidence["runtime"],
            "runtime_version": evidence["runtime_version"],
            "reason": evidence.get("reason"),
            "parity": {
                name: {k: v for k, v in result.items()}
                for name, result in (evidence.get("parity") or {}).get("sets", {}).items()
            },
            "tolerance": (evidence.get("parity") or {}).get("tolerance"),
        }

    def _non_inferiority(self) -> dict[str, Any] | None:
        return self.non_inferiority.to_dict() if self.non_inferiority else None

"""A version's model card as a CycloneDX 1.6 machine-learning bill of materials, so that
supply-chain tools (dependency-track, SBOM scanners) can read what the model is, what it was
measured to do, and which packages made it.

Built from the same checked records as the documentation: the model component carries the
model file's SHA-256, the card (`modelCard`: parameters, metrics with their intervals,
considerations), and modelcycle's lineage as properties; each recorded package version is a
component the model depends on.
"""

from __future__ import annotations

import uuid
from typing import Any

from modelcycle.artifacts import NOT_INSTALLED
from modelcycle.reports._evidence import VersionRecords
from modelcycle.reports._testscore import TestScore

SPEC_VERSION = "1.6"
_NAMESPACE = uuid.UUID("8f6f3a52-6f4e-4c55-9d0f-6d6f64656c63")  # modelcycle's BOM namespace


def _task_approach(task: str | None) -> str:
    return "unsupervised" if task in ("clustering",) else "supervised"


def _metric_entries(card: dict[str, Any]) -> list[dict[str, Any]]:
    entries = []
    for name, figures in (card.get("metrics") or {}).items():
        entry: dict[str, Any] = {"type": name, "value": str(figures.get("value"))}
        if figures.get("low") is not None and figures.get("high") is not None:
            entry["confidenceInterval"] = {
                "lowerBound": str(figures["low"]),
                "upperBound": str(figures["high"]),
            }
        entries.append(entry)
    return entries


def _fairness(card: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for column, report in (card.get("fairness") or {}).items():
        if not isinstance(report, dict):
            continue
        measures = ", ".join(
            f"{k} {report[k]:.4f}"
            for k in ("selection_rate_gap", "selection_rate_ratio", "tpr_gap", "mean_error_gap")
            if isinstance(report.get(k), int | float)
        )
        found.append(
            {
                "groupAtRisk": column,
                "harms": f"differences in outcomes across {column} groups: {measures or 'n/a'}",
                "mitigationStrategy": "judged by the deployment gate's fairness limits; see "
                "gate/fairness.json",
            }
        )
    return found


def cyclonedx_bom(records: VersionRecords, score: TestScore | None = None) -> dict[str, Any]:
    """The CycloneDX 1.6 JSON document (as a dict) of one version."""
    v = records.version
    card = records.documents.get("card.json") or {}
    config = records.config
    model_ref = f"model:{v.model_name}@{v.version}"
    packages = {
        name: version
        for name, version in sorted(v.package_versions.items())
        if version not in (NOT_INSTALLED, "unknown")
    }
    package_components = []
    for name, version in packages.items():
        ref = f"pkg:pypi/{name.lower()}@{version}" if name != "python" else f"python@{version}"
        component: dict[str, Any] = {
            "type": "platform" if name == "python" else "library",
            "bom-ref": ref,
            "name": name,
            "version": str(version),
        }
        if name != "python":
            component["purl"] = ref
        package_components.append(component)
    features = config.get("features") or {}
    inputs = [{"format": f"{name} (numeric)"} for name in features.get("numeric", [])]
    inputs += [{"format": f"{name} (categorical)"} for name in features.get("categorical", [])]
    fingerprints = (records.manifest or {}).get("data_fingerprints") or {}
    datasets = [
        {
            "type": "dataset",
            "name": f"{part} rows",
            "description": f"from {(records.manifest or {}).get('data_source')}; content "
            f"fingerprint (SHA-256) {digest}",
        }
        for part, digest in sorted(fingerprints.items())
    ]
    properties = [
        {"name": "modelcycle:status", "value": str(v.status)},
        {"name": "modelcycle:run_folder", "value": v.artifact_uri},
        {"name": "modelcycle:manifest_sha256", "value": str(v.manifest_sha256)},
        {"name": "modelcycle:config_hash", "value": v.config_hash},
        {"name": "modelcycle:data_fingerprint", "value": v.data_fingerprint},
        {"name": "modelcycle:code_version", "value": v.code_version},
        {"name": "modelcycle:parent_version", "value": str(v.parent_version or "none")},
        {"name": "modelcycle:gate_decision", "value": str(v.gate.get("decision"))},
    ]
    if score is not None:
        properties.append({"name": "modelcycle:ml_test_score", "value": f"{score.final:g}"})
    considerations: dict[str, Any] = {}
    if config.get("intended_use"):
        considerations["useCases"] = [config["intended_use"]]
    if config.get("limitations"):
        considerations["technicalLimitations"] = list(config["limitations"])
    if fairness := _fairness(card):
        considerations["fairnessAssessments"] = fairness
    model_card: dict[str, Any] = {
        "modelParameters": {
            "approach": {"type": _task_approach(config.get("task"))},
            "task": str(config.get("task")),
            "architectureFamily": str((config.get("model") or {}).get("estimator")),
            "modelArchitecture": str((config.get("model") or {}).get("estimator")),
            "datasets": datasets,
            "inputs": inputs,
            "outputs": [{"format": f"{config.get('target')} ({config.get('task')})"}],
        },
        "quantitativeAnalysis": {"performanceMetrics": _metric_entries(card)},
        "considerations": considerations,
    }
    model = {
        "type": "machine-learning-model",
        "bom-ref": model_ref,
        "name": v.model_name,
        "version": str(v.version),
        "description": str(config.get("description") or ""),
        "hashes": [{"alg": "SHA-256", "content": v.model_sha256}],
        "modelCard": model_card,
        "properties": properties,
    }
    if config.get("owner"):
        model["authors"] = [{"name": str(config["owner"])}]
    serial = uuid.uuid5(_NAMESPACE, f"{v.model_name}/{v.version}/{v.model_sha256}")
    modelcycle_version = packages.get("modelcycle", "unknown")
    return {
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "serialNumber": f"urn:uuid:{serial}",
        "version": 1,
        "metadata": {
            "timestamp": v.created_at.isoformat(),
            "tools": {
                "components": [
                    {"type": "application", "name": "modelcycle", "version": modelcycle_version}
                ]
            },
            "component": {
                "type": "machine-learning-model",
                "bom-ref": f"{model_ref}#bom",
                "name": v.model_name,
                "version": str(v.version),
            },
        },
        "components": [model, *package_components],
        "dependencies": [
            {"ref": model_ref, "dependsOn": [c["bom-ref"] for c in package_components]},
            *({"ref": c["bom-ref"]} for c in package_components),
        ],
    }

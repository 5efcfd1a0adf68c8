"""Technical documentation of one version, structured after the EU AI Act's Annex IV, written
only from checked records: every statement cites the file (or registry entry) it rests on and
the SHA-256 it was checked against, and what the records cannot show is listed as missing.

Markdown for people and version control; HTML with every recorded text escaped (a reason, a
description or a column name is shown as written, never read as markup).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

from modelcycle.reports._evidence import Evidence, VersionRecords
from modelcycle.reports._testscore import TestScore, test_score_markdown

HEADINGS = (
    "1. General description and intended purpose",
    "2. Development process",
    "3. Monitoring, functioning and control",
    "4. Choice of performance metrics",
    "5. Risk management",
    "6. Changes over the lifecycle",
    "7. Standards and rubrics applied",
    "8. Post-market monitoring plan",
)


@dataclass(frozen=True)
class Statement:
    text: str
    evidence: tuple[Evidence, ...]


@dataclass
class Section:
    heading: str
    statements: list[Statement] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    table: list[str] = field(default_factory=list)  # Markdown rows (the test score)

    def says(self, text: str, *evidence: Evidence) -> None:
        self.statements.append(Statement(text, tuple(evidence)))


@dataclass(frozen=True)
class Document:
    title: str
    sections: tuple[Section, ...]
    problems: tuple[str, ...]

    def citations(self) -> list[Evidence]:
        return [e for s in self.sections for st in s.statements for e in st.evidence]

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "problems": list(self.problems),
            "sections": [
                {
                    "heading": s.heading,
                    "statements": [
                        {"text": st.text, "evidence": [e.to_dict() for e in st.evidence]}
                        for st in s.statements
                    ],
                    "missing": s.missing,
                }
                for s in self.sections
            ],
        }


def technical_documentation(records: VersionRecords, score: TestScore) -> Document:
    v = records.version
    card = records.documents.get("card.json") or {}
    sections = [Section(h) for h in HEADINGS]
    _general(sections[0], records, card)
    _development(sections[1], records)
    _functioning(sections[2], records, card)
    _metrics(sections[3], records, card)
    _risk(sections[4], records)
    _changes(sections[5], records)
    _standards(sections[6], records, score)
    _post_market(sections[7], records)
    title = f"Technical documentation: {v.model_name} v{v.version}"
    return Document(title, tuple(sections), tuple(records.problems))


def _general(s: Section, r: VersionRecords, card: dict[str, Any]) -> None:
    v, config = r.version, r.config
    if config:
        s.says(f"Purpose: {config.get('description')}", r.file("manifest.json"))
        s.says(f"Intended use: {config.get('intended_use')}", r.file("manifest.json"))
        s.says(
            f"Owner: {config.get('owner')}; task {config.get('task')}, target "
            f"{config.get('target')}",
            r.file("manifest.json"),
        )
        features = config.get("features") or {}
        s.says(
            f"Inputs: numeric {features.get('numeric')}, categorical "
            f"{features.get('categorical')}; sensitive attributes evaluated "
            f"{config.get('sensitive_columns')}",
            r.file("manifest.json"),
        )
    else:
        s.missing.append("the resolved config (the run folder could not be verified)")
    s.says(
        f"Version {v.version}, status {v.status}, model file {v.model_file} "
        f"(sha256 {v.model_sha256}), registered {v.created_at:%Y-%m-%d %H:%M} UTC by "
        f"{v.created_by}",
        r.registry_row(),
    )
    if not card:
        s.missing.append("the model card facts (card.json)")


def _development(s: Section, r: VersionRecords) -> None:
    v, manifest = r.version, r.manifest or {}
    if manifest:
        s.says(
            f"Trained {manifest.get('created_at')} in mode {manifest.get('training_mode')} "
            f"(flow run {manifest.get('flow_run_id')}), parent version "
            f"{manifest.get('parent_version') or 'none'}",
            r.file("manifest.json"),
        )
        s.says(
            f"Data: {manifest.get('data_source')}; fingerprints "
            f"{manifest.get('data_fingerprints')}",
            r.file("manifest.json"),
            r.file("profile.json"),
        )
        s.says(
            f"Code version {v.code_version}; packages "
            + ", ".join(f"{k} {val}" for k, val in sorted(v.package_versions.items())),
            r.file("manifest.json"),
            r.registry_row(),
        )
    else:
        s.missing.append("the run's manifest (data, code and package versions)")
    gate = r.version.gate
    when = manifest.get("created_at", "the training run")
    for check in gate.get("checks", []):
        verdict = (
            ("passed" if check["passed"] else "FAILED")
            if check.get("judged", True)
            else "not judged"
        )
        limit = (
            f" (limit {check['comparison']} {check['limit']})"
            if check.get("limit") is not None
            else ""
        )
        source = check.get("evidence") or "gate.json"
        s.says(
            f"{when}: gate check {check['name']} {verdict}, value {check.get('value')}{limit}",
            r.file(source),
        )
    if not gate.get("checks"):
        s.missing.append("gate checks")
    s.missing.append(
        "results of the project's automated test suite for this code version are not "
        "recorded with the version"
    )


def _functioning(s: Section, r: VersionRecords, card: dict[str, Any]) -> None:
    primary = card.get("primary_metric")
    slices = r.documents.get("slices.json")
    if slices and primary:
        for row in slices if isinstance(slices, list) else []:
            s.says(
                f"{primary} on {row.get('column')}={row.get('value')} ({row.get('rows')} rows): "
                f"{row.get(primary)}",
                r.file("slices.json"),
            )
    else:
        s.missing.append("accuracy per group (slices.json)")
    fairness = (r.documents.get("gate/fairness.json") or {}).get("balanced")
    if isinstance(fairness, dict):
        for column, report in fairness.items():
            if not isinstance(report, dict):
                continue
            measures = {
                k: report[k]
                for k in ("selection_rate_gap", "selection_rate_ratio", "tpr_gap", "mean_error_gap")
                if k in report
            }
            s.says(f"Fairness across {column}: {measures}", r.file("gate/fairness.json"))
    limitations = r.config.get("limitations") or []
    for item in limitations:
        s.says(f"Known limitation: {item}", r.file("manifest.json"))
    if not limitations:
        s.missing.append("known limitations (the config states none)")
    robustness = r.documents.get("gate/robustness.json")
    if robustness:
        s.says(
            f"Robustness: noise {robustness.get('noise', {}).get('value')}, edge cases "
            f"{sorted((robustness.get('edge_cases') or {}).keys())}",
            r.file("gate/robustness.json"),
        )
    s.says(
        "Human oversight: a version becomes champion only through the gate (or a recorded, "
        f"forced promotion); approval policy {r.config.get('gate', {}).get('approval')}",
        r.file("manifest.json"),
    )


def _metrics(s: Section, r: VersionRecords, card: dict[str, Any]) -> None:
    evaluation = r.config.get("evaluation") or {}
    if evaluation:
        s.says(
            f"Primary metric {evaluation.get('primary_metric')} (decides the gate's comparison "
            f"with the champion); also reported {evaluation.get('extra_metrics')}",
            r.file("manifest.json"),
        )
    metrics = (r.documents.get("metrics.json") or {}).get("candidate")
    intervals = r.documents.get("metric_intervals.json") or {}
    intervals = intervals.get("intervals", intervals)
    if metrics:
        for name, value in metrics.items():
            band = intervals.get(name) or {}
            s.says(
                f"Holdout {name}: {value} (interval {band.get('low')} to {band.get('high')})",
                r.file("metrics.json"),
                r.file("metric_intervals.json"),
            )
    else:
        s.missing.append("holdout metrics (metrics.json)")
    s.missing.append("the reasons for choosing these metrics beyond the config are not recorded")


def _risk(s: Section, r: VersionRecords) -> None:
    gate = r.config.get("gate")
    if gate:
        s.says(
            f"Gate policy: floors {gate.get('floors')}, non-inferiority "
            f"{gate.get('non_inferiority')}, fairness {gate.get('fairness')}, budgets "
            f"{gate.get('budgets')}",
            r.file("manifest.json"),
        )
    decision = r.version.gate.get("decision")
    s.says(
        f"Gate decision {decision}: " + "; ".join(r.version.gate.get("reasons", [])),
        r.file("gate.json"),
    )
    for incident in r.incidents:
        notes = "; ".join(f"{n.action}: {n.note}" for n in incident.notes) or "no notes"
        s.says(
            f"Incident #{incident.id} ({incident.kind}, {incident.severity}, {incident.status}) "
            f"opened {incident.opened_at:%Y-%m-%d}: {incident.summary}; {notes}",
            Evidence(f"incident #{incident.id}, evidence {incident.evidence_folder}", None, True),
        )
    if not r.incidents:
        s.says("No incident has been opened for this version.", r.registry_row())


def _changes(s: Section, r: VersionRecords) -> None:
    for entry in r.audit:
        s.says(
            f"{entry.at:%Y-%m-%d %H:%M:%S} UTC {entry.actor} {entry.action} "
            f"v{entry.version}: {entry.reason}",
            r.entry(entry),
        )
    if r.chain is not None:
        verdict = "intact" if r.chain.intact else "BROKEN"
        s.says(
            f"The model's audit chain is {verdict}: {r.chain.summary()}",
            Evidence(f"audit chain head of {r.version.model_name}", r.chain.head, r.chain.intact),
        )
    else:
        s.missing.append("the audit chain's verification")


def _standards(s: Section, r: VersionRecords, score: TestScore) -> None:
    s.says(
        f"ML Test Score (Breck et al. 2017): final {score.final:g}, sections "
        + ", ".join(f"{k} {val:g}" for k, val in score.sections.items()),
        r.file("manifest.json"),
    )
    s.table = test_score_markdown(score)
    s.missing.append("no harmonised standard or external certification is recorded")


def _post_market(s: Section, r: VersionRecords) -> None:
    monitoring = r.config.get("monitoring")
    if monitoring:
        s.says(
            f"Monitoring thresholds: drift share {monitoring.get('drift_share')}, warning share "
            f"{monitoring.get('warning_share')}, max quality drop "
            f"{monitoring.get('max_quality_drop')}, minimum rows {monitoring.get('min_rows')}, "
            f"retraining mode {monitoring.get('retrain_mode')}",
            r.file("manifest.json"),
        )
    deployments = (r.deployments or {}).get("deployments") or []
    for d in deployments:
        schedules = [x.get("cron") for x in d.get("schedules") or [] if isinstance(x, dict)]
        triggers = [t.get("name") for t in d.get("triggers") or [] if isinstance(t, dict)]
        if schedules or triggers:
            s.says(
                f"Deployment {d.get('name')} ({d.get('entrypoint')}): schedules {schedules}, "
                f"triggers {triggers}",
                r.deployments_evidence or Evidence("prefect.yaml", None, False, "not found"),
            )
    if not deployments:
        s.missing.append("schedules (no prefect.yaml found where the command ran)")
    for m in r.monitoring:
        s.says(
            f"Monitoring run {m.run_id} at {m.manifest.get('created_at')}: "
            f"{(m.decision or {}).get('status')}",
            m.evidence,
        )
    if not r.monitoring:
        s.missing.append("monitoring results for this version (no window monitored yet)")
    s.missing.append("service-level objectives of the prediction service are not recorded")


# -- rendering -----------------------------------------------------------------------------


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(doc: Document) -> str:
    lines = [f"# {doc.title}", ""]
    if doc.problems:
        lines += ["**Records that do not verify:**", *[f"- {p}" for p in doc.problems], ""]
    for section in doc.sections:
        lines += [f"## {section.heading}", ""]
        for st in section.statements:
            cited = "; ".join(e.cite() for e in st.evidence) or "registry"
            lines.append(f"- {_md_escape(st.text)} [evidence: {cited}]")
        if section.table:
            lines += ["", *section.table]
        if section.missing:
            lines += ["", "Missing from the records:", *[f"- {m}" for m in section.missing]]
        lines.append("")
    return "\n".join(lines)


def render_html(doc: Document) -> str:
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(doc.title)}</title></head><body>",
        f"<h1>{e(doc.title)}</h1>",
    ]
    if doc.problems:
        parts.append("<p><strong>Records that do not verify:</strong></p><ul>")
        parts += [f"<li>{e(p)}</li>" for p in doc.problems]
        parts.append("</ul>")
    for section in doc.sections:
        parts.append(f"<h2>{e(section.heading)}</h2><ul>")
        for st in section.statements:
            cited = "; ".join(x.cite() for x in st.evidence) or "registry"
            parts.append(f"<li>{e(st.text)} <small>[evidence: {e(cited)}]</small></li>")
        parts.append("</ul>")
        if section.table:
            parts.append("<pre>" + e("\n".join(section.table)) + "</pre>")
        if section.missing:
            parts.append("<p>Missing from the records:</p><ul>")
            parts += [f"<li>{e(m)}</li>" for m in section.missing]
            parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)

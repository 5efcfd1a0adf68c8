"""The monitoring run's markdown summary: status first, then the evidence behind it."""

from __future__ import annotations

import math
from typing import Any

from modelcycle.monitoring import DRIFT_EVENT, ColumnDrift, Decision, DriftResult, Finding, Quality

_ICON = {"ok": "OK", "warning": "WARNING", "drift": "DRIFT", "no_verdict": "NO VERDICT"}


def _number(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}g}" if abs(value) < 1e-3 and value != 0 else f"{value:.{digits}f}"


def _drift_row(c: ColumnDrift, weights: dict[str, float] | None) -> str:
    method = c.method.display_name if c.method else "-"
    verdict = "-" if c.drifted is None else ("**yes**" if c.drifted else "no")
    note = c.note or ""
    weight = "" if weights is None else f" {_number(weights.get(c.column))} |"
    return (
        f"| {c.column} | {c.kind} | {method} | {_number(c.score)} | {_number(c.threshold)} | "
        f"{verdict} | {c.reference_rows:,} / {c.current_rows:,} |{weight} {note} |"
    )


def drift_table(columns: list[ColumnDrift], weights: dict[str, float] | None = None) -> list[str]:
    """One row per column; with `weights`, the model's permutation importance of each."""
    head = "| column | kind | method | score | threshold | drifted | rows (ref / window) |"
    rule = "|---|---|---|---|---|---|---|"
    if weights is not None:
        head, rule = head + " importance |", rule + "---|"
    return [f"{head} note |", f"{rule}---|", *(_drift_row(c, weights) for c in columns)]


def _interval(quality: Quality, metric: str) -> str:
    ends = (quality.intervals or {}).get(metric)
    if not ends:
        return "-"
    return f"[{_number(ends.get('low'))}, {_number(ends.get('high'))}]"


def _weighted_line(features: DriftResult) -> str:
    if features.weights is None:
        return "The reference records no permutation importance: no importance-weighted share."
    weighted = features.weighted_share
    if weighted is None:
        return "No tested feature has a positive permutation importance: no weighted share."
    return f"The drifted features carry {weighted:.1%} of the model's permutation importance."


def _quality_lines(quality: Quality) -> list[str]:
    metrics = list(
        dict.fromkeys([*(quality.realised or {}), *(quality.estimated or {}), *quality.holdout])
    )
    confidence = f"{quality.confidence:.0%} interval" if quality.confidence else "interval"
    lines = [
        f"| metric | holdout (training) | realised (labelled rows) | {confidence} | "
        "estimated (no labels) |",
        "|---|---|---|---|---|",
    ]
    for metric in metrics:
        lines.append(
            f"| {metric} | {_number(quality.holdout.get(metric))} | "
            f"{_number((quality.realised or {}).get(metric))} | {_interval(quality, metric)} | "
            f"{_number((quality.estimated or {}).get(metric))} |"
        )
    lines.append("")
    coverage = f" of {quality.window_rows:,} ({quality.label_coverage:.0%} coverage)"
    lines.append(f"Labelled rows: {quality.labelled_rows:,}{coverage}. {quality.note}".rstrip())
    if quality.checks:
        lines += ["", "| metric | rule | limit | verdict |", "|---|---|---|---|"]
        lines += [
            f"| {c.metric} | {c.rule} | {_number(c.limit)} | {c.verdict.replace('_', ' ')} |"
            for c in quality.checks
        ]
    return lines


def monitoring_markdown(
    *,
    model: str,
    version: int,
    window: dict[str, Any],
    decision: Decision,
    features: DriftResult | None,
    prediction: ColumnDrift | None,
    quality: Quality | None,
    findings: list[Finding],
    run_uri: str,
    html_name: str | None,
    html_sample: dict[str, int] | None,
    incidents: list[dict[str, Any]],
    event_emitted: bool,
    production: list[str] | None = None,
) -> str:
    lines = [
        f"# Monitoring {model} v{version}: {_ICON[decision.status.value]}",
        "",
        f"- Window: `{window['pattern']}` ({len(window['files'])} file(s), "
        f"{window['rows']:,} rows)",
    ]
    if window.get("time_range"):
        lines.append(f"- Time range: {window['time_range']}")
    lines += ["", "## Why", "", *(f"- {reason}" for reason in decision.reasons)]
    if features is not None:
        lines += [
            "",
            "## Feature drift",
            "",
            f"{len(features.drifted_columns)} of {len(features.tested)} tested features drifted "
            f"(share {features.share_drifted:.0%}; dataset drift at {features.drift_share:.0%}). "
            + _weighted_line(features),
            "",
            *drift_table(features.columns, features.weights),
        ]
    if prediction is not None:
        lines += ["", "## Prediction drift", "", *drift_table([prediction])]
    if quality is not None:
        lines += ["", "## Quality", "", *_quality_lines(quality)]
    if findings:
        lines += ["", "## Schema findings", ""]
        lines += [f"- {f.severity}: {f.message}" for f in findings]
    lines += production or []
    lines += ["", "## Evidence", "", f"- Run folder: `{run_uri}`"]
    if html_name:
        sample = html_sample or {}
        lines.append(
            f"- Evidently report: `{run_uri.rstrip('/')}/{html_name}` (built from "
            f"{sample.get('current_sample', 0):,} of {sample.get('current_rows', 0):,} window "
            f"rows and {sample.get('reference_sample', 0):,} of "
            f"{sample.get('reference_rows', 0):,} reference rows; the verdicts above use all rows)"
        )
    for incident in incidents:
        occurrence = f"updated (occurrence {incident['occurrences']})"
        action = "opened" if incident["opened"] else occurrence
        lines.append(f"- Incident #{incident['id']} ({incident['kind']}) {action}")
    if event_emitted:
        lines.append(f"- Event `{DRIFT_EVENT}` emitted")
    return "\n".join(lines) + "\n"

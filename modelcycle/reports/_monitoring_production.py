"""The production sections of a monitoring summary on the prediction log: each answering
version, labels and their delays, the service's health, fairness of the answers, and the
estimate against realised quality over the recent windows (with the plots)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from modelcycle.monitoring import ProductionReport


def _n(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}f}"


def _ends(intervals: dict[str, dict[str, float]] | None, metric: str) -> str:
    ends = (intervals or {}).get(metric)
    return f"[{_n(ends.get('low'))}, {_n(ends.get('high'))}]" if ends else "-"


def _versions(production: ProductionReport) -> list[str]:
    lines = [
        "| version | rows | first | last | labelled | realised | interval | estimated | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for v in production.versions:
        metrics = list(dict.fromkeys([*(v.realised or {}), *(v.estimated or {})])) or ["-"]
        for metric in metrics:
            realised = (v.realised or {}).get(metric)
            estimated = (v.estimated or {}).get(metric)
            lines.append(
                f"| v{v.version} | {v.rows:,} | {v.first[:19]} | {v.last[:19]} | "
                f"{v.labelled:,} | {metric} {_n(realised)} | {_ends(v.intervals, metric)} | "
                f"{_n(estimated)} | {v.note} |"
            )
    return lines


def _labels(labels: dict[str, Any]) -> list[str]:
    line = (
        f"Labels for {labels['labelled']:,} of {labels['rows']:,} rows "
        f"({labels['coverage']:.1%} coverage)"
    )
    delay = labels.get("delay_hours")
    if delay:
        line += (
            f"; delay from answer to label p50 {delay['p50']:.2f} h, p90 {delay['p90']:.2f} h, "
            f"max {delay['max']:.2f} h"
        )
    lines = [line + "."]
    estimated = labels.get("estimated_unlabelled")
    if estimated:
        shown = ", ".join(f"{k} {_n(v)}" for k, v in estimated.items())
        lines.append(
            f"Label-free estimate on the {labels['unlabelled']:,} unlabelled rows: {shown}."
        )
    if labels.get("estimate_note"):
        lines.append(labels["estimate_note"] + ".")
    return lines


def _service(production: ProductionReport) -> list[str]:
    health = production.service
    lines = [
        "| version | requests | rows | rows/s | p50 ms | p99 ms | error rate (/metrics) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in health.rows:
        error = "-" if r.error_rate is None else f"{r.error_rate:.2%} of {r.metrics_requests:,.0f}"
        lines.append(
            f"| v{r.version} | {r.requests:,} | {r.rows:,} | {_n(r.rows_per_second, 1)} | "
            f"{_n(r.latency_p50_ms, 1)} | {_n(r.latency_p99_ms, 1)} | {error} |"
        )
    lines.append("")
    lines += [f"- breach: {b}" for b in health.breaches]
    lines += [f"- {n}" for n in health.notes]
    return lines


def _fairness(production: ProductionReport) -> list[str]:
    fairness = production.fairness
    if fairness is None:
        return ["No sensitive columns declared (or not a binary classifier): not measured."]
    lines = [f"Positive class `{fairness.positive_class}`.", ""]
    for column, groups in fairness.groups.items():
        lines += [
            f"**{column}**",
            "",
            "| group | rows | selection rate | interval | labelled positives | TPR | interval "
            "| judged |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for g in groups:
            tpr_ends = "-" if g.tpr_low is None else f"[{_n(g.tpr_low)}, {_n(g.tpr_high)}]"
            lines.append(
                f"| {g.group} | {g.rows:,} | {_n(g.selection_rate)} | "
                f"[{_n(g.selection_low)}, {_n(g.selection_high)}] | {g.labelled_positives:,} | "
                f"{_n(g.tpr)} | {tpr_ends} | {'yes' if g.judged else 'no (too few rows)'} |"
            )
        lines.append("")
    lines += [f"- {c.verdict.replace('_', ' ')}: {c.detail}" for c in fairness.checks]
    lines += [f"- {n}" for n in fairness.notes]
    return lines


def _history(production: ProductionReport) -> list[str]:
    lines = [
        "| window until | version | rows | labelled | estimated | realised | back-filled |",
        "|---|---|---|---|---|---|---|",
    ]
    for record in production.history:
        for version, v in sorted(record["versions"].items()):
            estimated = v.get("estimated") or {}
            realised = v.get("realised") or {}
            metric = next(iter(estimated), None) or next(iter(realised), None)
            if metric is None:
                est = real = "-"
            else:
                est = f"{metric} {_n(estimated.get(metric))}"
                real = f"{metric} {_n(realised.get(metric))}"
            lines.append(
                f"| {record['until'][:19]} | v{version} | {v.get('rows', 0):,} | "
                f"{v.get('labelled', 0):,} | {est} | {real} | {record.get('backfills', 0)} |"
            )
    lines.append("")
    lines += [f"- back-filled: {b}" for b in production.backfilled]
    return lines


def production_markdown(
    production: ProductionReport, run_uri: str, plots: list[str] | None = None
) -> list[str]:
    lines = ["", "## Versions in this window", "", *_versions(production)]
    lines += ["", "## Labels", "", *_labels(production.labels)]
    lines += ["", "## Service health", "", *_service(production)]
    lines += ["", "## Fairness in production", "", *_fairness(production)]
    lines += ["", "## Estimate against realised, recent windows", "", *_history(production)]
    plots = production.plots if plots is None else plots
    if plots:
        lines += ["", "## Plots", ""]
        for name in plots:
            uri = f"{run_uri.rstrip('/')}/{name}"
            link = uri if "://" in uri else Path(uri).resolve().as_uri()
            lines.append(f"- [{name}]({link})")
    if production.rollback:
        lines += ["", "## Automatic rollback", "", f"- {production.rollback}"]
    return lines

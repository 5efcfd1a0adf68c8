"""What only production shows: how the service behaved (latency, throughput, errors) and
whether its answers treat groups alike over time, each judged with its uncertainty.

The gate checks fairness once, on the holdout; here the same limits are applied to every
window of logged answers. A check is a breach only when the evidence is clear (intervals
apart by more than the limit); small groups are reported and not judged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from modelcycle import evaluation
from modelcycle.config import PipelineConfig, ServiceLimits
from modelcycle.data import group_labels
from modelcycle.monitoring._reference import PREDICTION_COLUMN
from modelcycle.monitoring._traffic import (
    LogWindow,
    as_classes,
    wilson_interval,
)
from modelcycle.utils import to_json_dict

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][\w:]*)\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
REQUESTS_METRIC = "modelcycle_serve_requests_total"


@dataclass(frozen=True)
class ServiceMetrics:
    """Request counts by version and HTTP status scraped from the service's /metrics, or why
    they could not be read. Counters run since the service started, not per window."""

    url: str | None
    requests: dict[str, dict[str, float]] = field(default_factory=dict)  # version -> status
    note: str = ""

    @property
    def reachable(self) -> bool:
        return bool(self.url) and not self.note


def parse_metrics(text: str, model: str) -> dict[str, dict[str, float]]:
    """`modelcycle_serve_requests_total` of the predict route for one model: version ->
    status -> count (Prometheus text format)."""
    found: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None or match["name"] != REQUESTS_METRIC:
            continue
        labels = dict(_LABEL.findall(match["labels"]))
        if labels.get("model") != model or labels.get("route") != "predict":
            continue
        by_status = found.setdefault(labels.get("version", ""), {})
        status = labels.get("status", "")
        by_status[status] = by_status.get(status, 0.0) + float(match["value"])
    return found


def read_service_metrics(url: str | None, model: str, timeout: float = 3.0) -> ServiceMetrics:
    """Scrape the service's /metrics; unreachable is a note, never a failure: the log's own
    figures are reported either way."""
    if not url:
        return ServiceMetrics(None, note="no monitoring.service.metrics_url configured")
    import httpx

    try:
        response = httpx.get(url, timeout=timeout)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        return ServiceMetrics(url, note=f"service metrics at {url} unreachable ({exc})")
    return ServiceMetrics(url, parse_metrics(response.text, model))


@dataclass(frozen=True)
class ServiceRow:
    """One answering version in one window."""

    version: int
    requests: int
    rows: int
    seconds: float
    rows_per_second: float | None
    latency_p50_ms: float
    latency_p99_ms: float
    error_rate: float | None  # from /metrics (5xx among predict requests), since start
    metrics_requests: float | None


@dataclass(frozen=True)
class ServiceHealth:
    rows: list[ServiceRow]
    metrics_url: str | None
    metrics_note: str
    breaches: list[str]
    notes: list[str]

    def to_dict(self) -> dict[str, Any]:
        return to_json_dict(self)


def _error_rate(counts: dict[str, float]) -> tuple[float | None, float | None]:
    total = sum(counts.values())
    if total <= 0:
        return None, None
    errors = sum(v for status, v in counts.items() if status.startswith("5"))
    return errors / total, total


def service_health(
    log_window: LogWindow, limits: ServiceLimits, metrics: ServiceMetrics
) -> ServiceHealth:
    """Latency percentiles per request, throughput while answering, and the error rate per
    version; each limit judged only on versions with at least `min_requests` requests."""
    traffic = log_window.traffic
    rows, breaches, notes = [], [], []
    for version, mask in log_window.version_rows.items():
        part = traffic if mask.all() else traffic[mask]
        latencies = log_window.request_latencies(version)
        seconds = float((part["time"].max() - part["time"].min()).total_seconds())
        rate = len(part) / seconds if seconds > 0 else None
        error_rate, counted = _error_rate(metrics.requests.get(str(version), {}))
        row = ServiceRow(
            version,
            len(latencies),
            len(part),
            seconds,
            rate,
            float(np.percentile(latencies, 50)),
            float(np.percentile(latencies, 99)),
            error_rate,
            counted,
        )
        rows.append(row)
        if row.requests < limits.min_requests:
            notes.append(
                f"v{version}: {row.requests} requests, fewer than "
                f"monitoring.service.min_requests {limits.min_requests}: not judged"
            )
            continue
        for name, value, limit, unit in (
            ("p50 latency", row.latency_p50_ms, limits.max_p50_ms, " ms"),
            ("p99 latency", row.latency_p99_ms, limits.max_p99_ms, " ms"),
            ("error rate", row.error_rate, limits.max_error_rate, ""),
        ):
            if limit is not None and value is not None and value > limit:
                shown = f"{value:.1f}{unit}" if unit else f"{value:.2%}"
                bound = f"{limit:g}{unit}" if unit else f"{limit:.2%}"
                breaches.append(f"service v{version}: {name} {shown} is above its limit {bound}")
    if metrics.note:
        notes.append(metrics.note + "; the log's figures are reported without the error rate")
    return ServiceHealth(rows, metrics.url, metrics.note, breaches, notes)


# --- fairness in production ---------------------------------------------------------------


@dataclass(frozen=True)
class GroupRate:
    group: str
    rows: int
    selection_rate: float
    selection_low: float
    selection_high: float
    labelled_positives: int
    tpr: float | None
    tpr_low: float | None
    tpr_high: float | None
    judged: bool


@dataclass(frozen=True)
class FairnessCheck:
    column: str
    measure: str  # "selection_rate_gap", "selection_rate_ratio", "tpr_gap"
    value: float | None
    limit: float
    verdict: str  # ok, within_noise, breach, not_judged
    detail: str


@dataclass(frozen=True)
class ProductionFairness:
    positive_class: Any
    groups: dict[str, list[GroupRate]]
    checks: list[FairnessCheck]
    notes: list[str]

    @property
    def breaches(self) -> list[FairnessCheck]:
        return [c for c in self.checks if c.verdict == "breach"]

    def to_dict(self) -> dict[str, Any]:
        return to_json_dict(self)


def production_fairness(
    log_window: LogWindow, config: PipelineConfig, confidence: float
) -> ProductionFairness | None:
    """Per sensitive column, from the logged answers: each group's selection rate (share
    answered the positive class) and, on the labelled rows, its true-positive rate, each with
    a Wilson interval; the gate's fairness limits judged on the groups large enough.

    None for models without sensitive columns or that are not binary classifiers.
    """
    columns = config.sensitive_columns
    if not columns or config.task.value != "binary_classification":
        return None
    classes = log_window.classes
    if classes is None:
        return None
    limits = config.gate.fairness
    positive = evaluation.positive_class(config, classes)
    table = log_window.window.table
    predicted = log_window.outputs[PREDICTION_COLUMN].to_numpy() == positive
    target = table[config.target].to_numpy()
    labelled = pd.notna(target)
    truth = np.zeros(len(table), dtype=bool)
    if labelled.any():
        truth[labelled] = as_classes(target[labelled], classes) == positive
    groups: dict[str, list[GroupRate]] = {}
    checks: list[FairnessCheck] = []
    notes: list[str] = []
    for column in columns:
        if column not in table.columns or table[column].isna().all():
            notes.append(
                f"sensitive column {column!r} is not in the logged inputs (callers did not "
                "send it): not judged"
            )
            continue
        names = group_labels(table[column])
        rates = []
        for group in sorted(set(names)):
            within = names == group
            n = int(within.sum())
            chosen = int((predicted & within).sum())
            low, high = wilson_interval(chosen, n, confidence)
            actual = within & labelled & truth
            k = int(actual.sum())
            hit = int((actual & predicted).sum())
            tpr = hit / k if k else None
            tpr_low, tpr_high = wilson_interval(hit, k, confidence) if k else (None, None)
            rates.append(
                GroupRate(
                    str(group),
                    n,
                    chosen / n,
                    low,
                    high,
                    k,
                    tpr,
                    tpr_low,
                    tpr_high,
                    n >= limits.min_group_rows,
                )
            )
        groups[column] = rates
        checks += _fairness_checks(column, rates, limits, notes)
    return ProductionFairness(positive, groups, checks, notes)


def _gap_check(
    column: str,
    measure: str,
    points: list[tuple[str, float, float, float]],
    limit: float,
) -> FairnessCheck:
    """The largest gap between two groups: a breach when even the nearest ends of their
    intervals are further apart than the limit, within noise when only the estimates are."""
    top = max(points, key=lambda p: p[1])
    bottom = min(points, key=lambda p: p[1])
    gap = top[1] - bottom[1]
    surely = top[2] - bottom[3]  # low end of the highest minus high end of the lowest
    what = (
        f"{column}: {measure.replace('_', ' ')} {gap:.3f} "
        f"({top[0]} {top[1]:.3f} vs {bottom[0]} {bottom[1]:.3f})"
    )
    if gap <= limit:
        return FairnessCheck(column, measure, gap, limit, "ok", f"{what} within {limit:g}")
    if surely > limit:
        detail = f"{what} is above {limit:g}, their intervals apart by {surely:.3f}"
        return FairnessCheck(column, measure, gap, limit, "breach", detail)
    detail = f"{what} is above {limit:g} but their intervals overlap it: within noise"
    return FairnessCheck(column, measure, gap, limit, "within_noise", detail)


def _fairness_checks(
    column: str, rates: list[GroupRate], limits: Any, notes: list[str]
) -> list[FairnessCheck]:
    judged = [r for r in rates if r.judged]
    small = [f"{r.group} ({r.rows})" for r in rates if not r.judged]
    if small:
        notes.append(
            f"{column}: group(s) {', '.join(small)} below gate.fairness.min_group_rows "
            f"{limits.min_group_rows}: reported, not judged"
        )
    if len(judged) < 2:
        notes.append(f"{column}: fewer than two groups large enough to compare: not judged")
        return []
    checks = []
    selection = [(r.group, r.selection_rate, r.selection_low, r.selection_high) for r in judged]
    if limits.max_selection_rate_gap is not None:
        checks.append(
            _gap_check(column, "selection_rate_gap", selection, limits.max_selection_rate_gap)
        )
    if limits.min_selection_rate_ratio is not None:
        top = max(judged, key=lambda r: r.selection_rate)
        bottom = min(judged, key=lambda r: r.selection_rate)
        ratio = bottom.selection_rate / top.selection_rate if top.selection_rate > 0 else 1.0
        best = bottom.selection_high / top.selection_low if top.selection_low > 0 else 1.0
        limit = limits.min_selection_rate_ratio
        verdict = "ok" if ratio >= limit else ("breach" if best < limit else "within_noise")
        checks.append(
            FairnessCheck(
                column,
                "selection_rate_ratio",
                ratio,
                limit,
                verdict,
                f"{column}: selection rate ratio {ratio:.3f} ({bottom.group} / {top.group}), "
                f"limit {limit:g}, at best {best:.3f} within the intervals",
            )
        )
    if limits.max_tpr_gap is not None:
        enough = [r for r in judged if r.labelled_positives >= limits.min_group_rows]
        if len(enough) >= 2:
            tprs = [(r.group, r.tpr, r.tpr_low, r.tpr_high) for r in enough]
            checks.append(_gap_check(column, "tpr_gap", tprs, limits.max_tpr_gap))  # type: ignore[arg-type]
        else:
            notes.append(
                f"{column}: fewer than two groups with {limits.min_group_rows} labelled "
                "positives: true-positive rate gap not judged"
            )
    return checks


# --- the whole production view of one window ---------------------------------------------


@dataclass(frozen=True)
class ProductionReport:
    """Everything a log window shows beyond drift: per-version figures, labels and their
    delays, the service's health, fairness of the answers, and the window history (estimate
    against realised quality over time, back-filled)."""

    versions: list[Any]  # VersionSummary
    labels: dict[str, Any]
    service: ServiceHealth
    fairness: ProductionFairness | None
    history: list[dict[str, Any]] = field(default_factory=list)
    backfilled: list[str] = field(default_factory=list)
    rollback: dict[str, Any] | None = None
    plots: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "versions": [v.to_dict() for v in self.versions],
            "labels": self.labels,
            "service": self.service.to_dict(),
            "fairness": None if self.fairness is None else self.fairness.to_dict(),
            "history": self.history,
            "backfilled": self.backfilled,
            "rollback": self.rollback,
            "plots": self.plots,
        }


def judge_production(decision: Any, production: ProductionReport) -> Any:
    """Add the service and fairness verdicts to the drift/quality decision: a breach makes the
    status at least `warning` and opens an incident of its kind (`service`, `fairness`);
    neither is drift, so neither emits the retraining event."""
    from modelcycle.monitoring._status import Decision, Status

    reasons, kinds = list(decision.reasons), list(decision.incident_kinds)
    severities = dict(decision.severities)
    breached = []
    if production.service.breaches:
        breached += production.service.breaches
        kinds.append("service")
        severities["service"] = "high"
    if production.fairness is not None and production.fairness.breaches:
        breached += [c.detail for c in production.fairness.breaches]
        kinds.append("fairness")
        severities["fairness"] = "high"
    notes = list(production.service.notes)
    if production.fairness is not None:
        notes += production.fairness.notes
        notes += [c.detail for c in production.fairness.checks if c.verdict == "within_noise"]
    if not breached and not notes:
        return decision
    status = decision.status
    if breached and status in (Status.ok, Status.no_verdict):
        status = Status.warning
    if breached and status == Status.warning and decision.status == Status.ok:
        reasons = [r for r in reasons if not r.startswith("no feature, prediction or quality")]
    return Decision(status, breached + reasons + notes, kinds, severities)

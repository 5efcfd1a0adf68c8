"""Evidently: the human-readable drift report, and its verdicts read back by name.

The HTML is built from a bounded random sample (Evidently needs minutes and gigabytes at a
million rows); modelcycle's verdicts come from `_drift` on all rows. The banner
written into the page says which sample it shows. Results are read by metric type and column
name, never by position.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from modelcycle.monitoring._drift import ColumnKind, ColumnRule, Method

_VALUE_DRIFT = "evidently:metric_v2:ValueDrift"
_METHODS_BY_NAME = {**{m.display_name: m for m in Method}, **{m.value: m for m in Method}}


@dataclass(frozen=True)
class EvidentlyColumn:
    method: Method | None
    method_name: str
    score: float
    threshold: float
    drifted: bool


def _dataset(frame: pd.DataFrame, columns: Mapping[str, ColumnKind]) -> Any:
    from evidently import DataDefinition, Dataset

    numeric = [c for c, k in columns.items() if k is ColumnKind.numeric]
    categorical = [c for c, k in columns.items() if k is ColumnKind.categorical]
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    return Dataset.from_pandas(frame[list(columns)], data_definition=definition)


def _preset(columns: Mapping[str, ColumnKind], rules: Mapping[str, ColumnRule], share: float):
    from evidently.presets import DataDriftPreset

    # The two-sample chi-square is modelcycle's own: Evidently shows its default there.
    methods = {
        c: r.method.value
        for c, r in rules.items()
        if r.method and r.method is not Method.chi2_contingency and c in columns
    }
    thresholds = {c: r.threshold for c, r in rules.items() if r.threshold is not None}
    return DataDriftPreset(
        columns=list(columns),
        drift_share=share,
        per_column_method=methods or None,
        per_column_threshold={c: t for c, t in thresholds.items() if c in columns} or None,
    )


def run_preset(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: Mapping[str, ColumnKind],
    rules: Mapping[str, ColumnRule] | None = None,
    drift_share: float = 0.5,
) -> Any:
    """Evidently's `DataDriftPreset` with tests; returns the snapshot (it holds both frames)."""
    from evidently import Report

    report = Report([_preset(columns, rules or {}, drift_share)], include_tests=True)
    return report.run(_dataset(current, columns), _dataset(reference, columns))


def read_value_drift(snapshot_dict: Mapping[str, Any]) -> dict[str, EvidentlyColumn]:
    """Per-column score, method and threshold from `ValueDrift` metrics; the verdict from the
    test bound to each metric (FAIL means drifted)."""
    statuses = {}
    for test in snapshot_dict["tests"]:
        params = test.get("metric_config", {}).get("params", {})
        if params.get("type") == _VALUE_DRIFT:
            statuses[params["column"]] = test["status"]
    found = {}
    for metric in snapshot_dict["metrics"]:
        config = metric.get("config", {})
        if config.get("type") != _VALUE_DRIFT:
            continue
        column = config["column"]
        found[column] = EvidentlyColumn(
            method=_METHODS_BY_NAME.get(config["method"]),
            method_name=config["method"],
            score=float(metric["value"]),
            threshold=float(config["threshold"]),
            drifted=statuses[column] == "FAIL",
        )
    return found


def evidently_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: Mapping[str, ColumnKind],
    rules: Mapping[str, ColumnRule] | None = None,
    drift_share: float = 0.5,
) -> dict[str, EvidentlyColumn]:
    """Evidently's verdicts; only the snapshot's dict is kept (the snapshot pins both frames)."""
    snapshot = run_preset(reference, current, columns, rules, drift_share)
    as_dict = snapshot.dict()
    del snapshot
    return read_value_drift(as_dict)


@dataclass(frozen=True)
class SampledReport:
    html: str
    current_rows: int
    current_sample: int
    reference_rows: int
    reference_sample: int

    def facts(self) -> dict[str, int]:
        return {
            "current_rows": self.current_rows,
            "current_sample": self.current_sample,
            "reference_rows": self.reference_rows,
            "reference_sample": self.reference_sample,
        }


def _sample(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    return frame if len(frame) <= rows else frame.sample(n=rows, random_state=seed)


def _banner(report: SampledReport, title: str) -> str:
    def part(sample: int, total: int, side: str) -> str:
        if sample == total:
            return f"all {total:,} {side} rows"
        return f"a random sample of {sample:,} of {total:,} {side} rows"

    text = (
        f"{title}. This report shows {part(report.current_sample, report.current_rows, 'window')}"
        f" and {part(report.reference_sample, report.reference_rows, 'reference')}. "
        "The monitoring verdicts (drift.json, the Prefect artifact) are computed by modelcycle "
        "on all rows."
    )
    return (
        '<div style="font-family:sans-serif;padding:12px;margin:8px;border:2px solid #c60;'
        f'background:#fff4e5" id="modelcycle-sample-note">{html.escape(text)}</div>'
    )


@dataclass(frozen=True)
class ReportJob:
    """What Evidently's page is built from: both samples, the column kinds, the drift rules."""

    reference: pd.DataFrame
    current: pd.DataFrame
    columns: dict[str, ColumnKind]
    rules: dict[str, ColumnRule]
    drift_share: float


def render_html(job: ReportJob) -> str:
    """Evidently's drift and summary page for one job, in this process."""
    from evidently import Report
    from evidently.presets import DataSummaryPreset

    report = Report([_preset(job.columns, job.rules, job.drift_share), DataSummaryPreset()])
    snapshot = report.run(_dataset(job.current, job.columns), _dataset(job.reference, job.columns))
    page = snapshot.get_html_str(as_iframe=False)
    del snapshot
    return page


def sampled_html_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: Mapping[str, ColumnKind],
    rules: Mapping[str, ColumnRule] | None,
    drift_share: float,
    sample_rows: int,
    seed: int,
    title: str,
    render: Callable[[ReportJob], str] = render_html,
) -> SampledReport:
    """Evidently's drift and summary report on at most `sample_rows` rows per side; `render`
    builds the page (`ReportProcess.render` builds it in a process of its own)."""
    cur = _sample(current, sample_rows, seed)
    ref = _sample(reference, sample_rows, seed)
    page = render(ReportJob(ref, cur, dict(columns), dict(rules or {}), drift_share))
    info = SampledReport("", len(current), len(cur), len(reference), len(ref))
    marker = page.find("<body")
    cut = page.find(">", marker) + 1 if marker >= 0 else 0
    page = page[:cut] + _banner(info, title) + page[cut:]
    return replace(info, html=page)

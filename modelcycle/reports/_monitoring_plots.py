"""Pictures of the recent log windows, where people would rather look than read: drift score
per feature, estimated against realised quality, selection rate per group, and latency.

Bare `Figure`s (no pyplot, no backend state), drawn from the window history the run has just
written, so each picture shows this window beside the ones before it.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from matplotlib.figure import Figure

from modelcycle.monitoring import ProductionReport

PLOT_DRIFT = "plots/drift-per-feature.png"
PLOT_QUALITY = "plots/quality-estimated-vs-realised.png"
PLOT_SELECTION = "plots/selection-rate-per-group.png"
PLOT_LATENCY = "plots/latency.png"


def _when(record: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(record["until"])


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _axes(title: str, ylabel: str) -> tuple[Figure, Any]:
    fig = Figure(figsize=(7.5, 4.2))
    ax = fig.add_subplot()
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel)
    ax.set_xlabel("window end (UTC)")
    ax.grid(alpha=0.3)
    return fig, ax


def _finish(fig: Figure, ax: Any) -> Figure:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best")
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def drift_figure(history: list[dict[str, Any]]) -> Figure | None:
    records = [r for r in history if r.get("drift")]
    if not records:
        return None
    fig, ax = _axes("Drift score per feature over recent windows", "drift score")
    features = sorted({f for r in records for f in r["drift"]})
    for feature in features:
        points = [(_when(r), r["drift"].get(feature)) for r in records]
        points = [(t, v) for t, v in points if _finite(v)]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=feature)
    return _finish(fig, ax)


def _metric(history: list[dict[str, Any]]) -> str | None:
    for record in history:
        for v in record["versions"].values():
            for key in ("realised", "estimated"):
                if v.get(key):
                    return "accuracy" if "accuracy" in v[key] else next(iter(v[key]))
    return None


def quality_figure(history: list[dict[str, Any]]) -> Figure | None:
    metric = _metric(history)
    if metric is None:
        return None
    fig, ax = _axes(f"{metric}: estimated without labels against realised", metric)
    versions = sorted({int(k) for r in history for k in r["versions"]})
    for version in versions:
        rows = [(r, r["versions"].get(str(version))) for r in history]
        rows = [(r, v) for r, v in rows if v]
        estimated = [(_when(r), (v.get("estimated") or {}).get(metric)) for r, v in rows]
        estimated = [(t, x) for t, x in estimated if _finite(x)]
        if estimated:
            ax.plot(
                *zip(*estimated, strict=True), ls="--", marker="s", label=f"v{version} estimated"
            )
        realised = [(r, v) for r, v in rows if _finite((v.get("realised") or {}).get(metric))]
        if realised:
            times = [_when(r) for r, _ in realised]
            values = [v["realised"][metric] for _, v in realised]
            ends = [(v.get("intervals") or {}).get(metric) or {} for _, v in realised]
            low = [max(0.0, x - e.get("low", x)) for x, e in zip(values, ends, strict=True)]
            high = [max(0.0, e.get("high", x) - x) for x, e in zip(values, ends, strict=True)]
            ax.errorbar(
                times,
                values,
                yerr=[low, high],
                marker="o",
                capsize=3,
                label=f"v{version} realised (interval)",
            )
    return _finish(fig, ax)


def selection_figure(history: list[dict[str, Any]]) -> Figure | None:
    records = [r for r in history if r.get("fairness")]
    if not records:
        return None
    fig, ax = _axes("Selection rate per group over recent windows", "selection rate")
    series: dict[str, list[tuple[datetime, float, float, float]]] = {}
    for record in records:
        for column, groups in record["fairness"].items():
            for g in groups:
                series.setdefault(f"{column}={g['group']}", []).append(
                    (_when(record), g["selection_rate"], g["selection_low"], g["selection_high"])
                )
    for name, points in sorted(series.items()):
        times = [p[0] for p in points]
        values = [p[1] for p in points]
        yerr = [[p[1] - p[2] for p in points], [p[3] - p[1] for p in points]]
        ax.errorbar(times, values, yerr=yerr, marker="o", capsize=3, label=name)
    return _finish(fig, ax)


def latency_figure(history: list[dict[str, Any]]) -> Figure | None:
    records = [r for r in history if r.get("service")]
    if not records:
        return None
    fig, ax = _axes("Request latency per version over recent windows", "ms")
    versions = sorted({row["version"] for r in records for row in r["service"]})
    for version in versions:
        rows = [
            (_when(r), row) for r in records for row in r["service"] if row["version"] == version
        ]
        times = [t for t, _ in rows]
        ax.plot(
            times, [row["latency_p50_ms"] for _, row in rows], marker="o", label=f"v{version} p50"
        )
        ax.plot(
            times,
            [row["latency_p99_ms"] for _, row in rows],
            marker="^",
            ls="--",
            label=f"v{version} p99",
        )
    return _finish(fig, ax)


def production_figures(production: ProductionReport) -> dict[str, Figure]:
    """The pictures this run can draw, by file name in the evidence folder."""
    history = production.history
    drawn = {
        PLOT_DRIFT: drift_figure(history),
        PLOT_QUALITY: quality_figure(history),
        PLOT_SELECTION: selection_figure(history),
        PLOT_LATENCY: latency_figure(history),
    }
    return {name: fig for name, fig in drawn.items() if fig is not None}

"""How drift, quality and schema findings become one status, and the reasons for it.

No Prefect here; `tasks/monitoring.py` wraps these steps and `flows/monitoring.py` wires them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Literal

import numpy as np
import pandas as pd

from modelcycle import evaluation, gate
from modelcycle.config import PipelineConfig, higher_is_better
from modelcycle.monitoring._drift import ColumnDrift, ColumnRule, DriftResult, Method
from modelcycle.monitoring._drift import column_drift as _column_drift
from modelcycle.monitoring._drift import dataset_drift as _dataset_drift
from modelcycle.monitoring._performance import Calibration, estimate
from modelcycle.monitoring._reference import (
    PREDICTION_COLUMN,
    SCORE_COLUMN,
    Reference,
    feature_kinds,
    prediction_kind,
)
from modelcycle.monitoring._window import Finding, Window
from modelcycle.utils import to_json_dict

# What a `drift` status emits, and what the retraining deployment's trigger listens for.
DRIFT_EVENT = "modelcycle.model.drift-detected"


class Status(StrEnum):
    ok = "ok"
    warning = "warning"
    drift = "drift"
    no_verdict = "no_verdict"


def drift_rules(config: PipelineConfig) -> dict[str, ColumnRule]:
    return {
        column: ColumnRule(Method(rule.method) if rule.method else None, rule.threshold)
        for column, rule in config.monitoring.columns.items()
    }


def importance_weights(reference: Reference) -> dict[str, float] | None:
    """Feature -> weight in the importance-weighted drift share: its permutation importance,
    negative values (shuffling helped, noise) counted as zero."""
    importance = reference.importance
    if importance is None:
        return None
    return {feature: max(value, 0.0) for feature, value in importance.items()}


def feature_drift(
    reference: Reference, inputs: pd.DataFrame, config: PipelineConfig
) -> DriftResult:
    """Every feature, column by column, against the reference sample, with the weights of
    the importance-weighted share."""
    result = _dataset_drift(
        reference.data,
        inputs,
        feature_kinds(config),
        drift_rules(config),
        config.monitoring.drift_share,
        two_sample_chisquare=config.monitoring.chisquare == "two_sample",
    )
    return replace(result, weights=importance_weights(reference))


def prediction_drift(
    reference: Reference, outputs: pd.DataFrame, config: PipelineConfig
) -> ColumnDrift:
    column, kind = prediction_kind(config)
    return _column_drift(
        f"{column} (champion)",
        reference.predictions[column],
        outputs[column],
        kind,
        two_sample_chisquare=config.monitoring.chisquare == "two_sample",
    )


QualityVerdict = Literal["ok", "within_noise", "breach", "not_judged"]


@dataclass(frozen=True)
class QualityCheck:
    """One realised metric against one limit (a gate floor, or the holdout figure less the
    allowed drop), judged on the bootstrap interval rather than the point estimate."""

    metric: str
    rule: Literal["floor", "max_drop"]
    realised: float | None
    low: float | None
    high: float | None
    limit: float
    verdict: QualityVerdict
    detail: str


@dataclass(frozen=True)
class Quality:
    labelled_rows: int
    realised: dict[str, float] | None
    holdout: dict[str, float]
    estimated: dict[str, float] | None
    note: str = ""
    window_rows: int = 0
    label_coverage: float = 0.0
    intervals: dict[str, dict[str, float]] | None = None
    confidence: float | None = None
    checks: list[QualityCheck] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return to_json_dict(self)


def _typed_target(values: pd.Series, classes: np.ndarray | None) -> np.ndarray:
    y = values.to_numpy()
    if classes is not None:
        try:
            return y.astype(classes.dtype)
        except (TypeError, ValueError):
            return y
    return y.astype("float64")


def realised_intervals(
    y: np.ndarray,
    outputs: evaluation.Outputs,
    realised: dict[str, float],
    config: PipelineConfig,
) -> dict[str, dict[str, float]]:
    """Percentile bootstrap interval of every realised metric, by the gate's engine.

    Above `quality_interval.max_rows` labelled rows the resampling runs on a random sample of
    that many rows, and each end's distance from the sample's own figure is scaled by
    sqrt(sample / rows) around the window's figure: the m-out-of-n bootstrap, valid for the
    averages and rank statistics measured here, whose spread shrinks as 1 / sqrt(rows). It
    keeps a million-row window to the cost of a 20,000-row one.
    """
    spec = config.monitoring.quality_interval
    rows = len(y)
    if rows <= spec.max_rows:
        return gate.metric_intervals(y, outputs, config, spec.resamples, spec.confidence, spec.seed)
    rng = np.random.default_rng(spec.seed)
    sample = np.sort(rng.choice(rows, size=spec.max_rows, replace=False))
    y_sample, out_sample = y[sample], outputs.subset(sample)
    centre = evaluation.compute_metrics(y_sample, out_sample, config)
    drawn = gate.metric_intervals(
        y_sample, out_sample, config, spec.resamples, spec.confidence, spec.seed
    )
    scale = math.sqrt(spec.max_rows / rows)
    return {
        metric: {
            "low": realised[metric] + (ends["low"] - centre[metric]) * scale,
            "high": realised[metric] + (ends["high"] - centre[metric]) * scale,
        }
        for metric, ends in drawn.items()
    }


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _judge_metric(
    metric: str,
    rule: Literal["floor", "max_drop"],
    value: float | None,
    interval: dict[str, float] | None,
    limit: float,
    against: str,
    confidence: float,
) -> QualityCheck:
    """ok when the estimate is on the right side of the limit; a breach only when the whole
    interval is past it; otherwise within noise."""
    low = interval.get("low") if interval else None
    high = interval.get("high") if interval else None
    if not _finite(value):
        detail = f"realised {metric} is undefined on the labelled rows: not judged"
        return QualityCheck(metric, rule, None, None, None, limit, "not_judged", detail)
    assert value is not None
    better_up = higher_is_better(metric)

    def past(v: float) -> bool:
        return v < limit if better_up else v > limit

    shown = f"[{low:.4f}, {high:.4f}]" if _finite(low) and _finite(high) else "undefined"
    what = f"realised {metric} {value:.4f} ({confidence:.0%} interval {shown})"
    if not past(value):
        verdict: QualityVerdict = "ok"
        detail = f"{what} meets {against} ({limit:.4f})"
    else:
        best = high if better_up else low  # the end of the interval nearest the limit
        if not _finite(best):
            best = value  # no interval (every resample undefined): the estimate decides
        assert best is not None
        if past(best):
            verdict = "breach"
            detail = f"{what} is past {against} ({limit:.4f}), the whole interval with it"
        else:
            verdict = "within_noise"
            detail = (
                f"{what} is past {against} ({limit:.4f}) but its interval reaches it: within noise"
            )
    return QualityCheck(metric, rule, value, low, high, limit, verdict, detail)


def quality_checks(
    realised: dict[str, float],
    intervals: dict[str, dict[str, float]],
    holdout: dict[str, float],
    config: PipelineConfig,
) -> list[QualityCheck]:
    """Each realised metric against its gate floor (if any) and against the holdout figure
    less the allowed drop (`monitoring.quality`, else `max_quality_drop`)."""
    confidence = config.monitoring.quality_interval.confidence
    checks = []
    for metric, value in realised.items():
        interval = intervals.get(metric)
        floor = config.gate.floors.get(metric)
        if floor is not None:
            kind = "floor" if higher_is_better(metric) else "ceiling"
            against = f"its gate {kind} {floor:g}"
            checks.append(
                _judge_metric(metric, "floor", value, interval, floor, against, confidence)
            )
        reference = holdout.get(metric)
        if not _finite(reference):
            continue
        assert reference is not None
        max_drop, relative = config.monitoring.quality_threshold(metric)
        allowed = max_drop * abs(reference) if relative else max_drop
        limit = reference - allowed if higher_is_better(metric) else reference + allowed
        drop = f"{max_drop:.0%} of it" if relative else f"{max_drop:g}"
        against = f"the holdout's {reference:.4f} less the allowed drop ({drop})"
        checks.append(
            _judge_metric(metric, "max_drop", value, interval, limit, against, confidence)
        )
    return checks


def estimate_outputs(
    outputs: pd.DataFrame,
    classes: np.ndarray | None,
    config: PipelineConfig,
    calibration: Calibration | None,
) -> dict[str, float] | None:
    """The label-free estimate of a binary classifier's outputs (scored, or as logged); rows
    without a score (answered by a version with other classes) are left out. None without a
    calibration, classes or any scored row."""
    if calibration is None or classes is None or SCORE_COLUMN not in outputs or outputs.empty:
        return None
    scores = outputs[SCORE_COLUMN].to_numpy(dtype="float64")
    keep = np.isfinite(scores)
    if not keep.any():
        return None
    predicted = outputs[PREDICTION_COLUMN].to_numpy() == evaluation.positive_class(config, classes)
    if not keep.all():
        scores, predicted = scores[keep], predicted[keep]
    return estimate(scores, predicted, calibration)


def assess_quality(
    window: Window,
    outputs: pd.DataFrame,
    proba: np.ndarray | None,
    classes: np.ndarray | None,
    reference: Reference,
    config: PipelineConfig,
) -> Quality:
    """Realised metrics on the labelled rows with their bootstrap intervals, judged against
    the floors and the allowed drops, next to the holdout figures and the label-free estimate.
    """
    holdout = dict(reference.meta.get("holdout_metrics", {}))
    estimated = estimate_outputs(outputs, classes, config, reference.calibration)
    table = window.table
    rows = len(table)
    if config.target not in table.columns:
        return Quality(0, None, holdout, estimated, "no target column in the window", rows)
    labelled = table[config.target].notna().to_numpy()
    count = int(labelled.sum())
    coverage = count / rows if rows else 0.0
    if count < config.monitoring.min_rows:
        note = f"{count} labelled rows, fewer than monitoring.min_rows {config.monitoring.min_rows}"
        return Quality(count, None, holdout, estimated, note, rows, coverage)
    y = _typed_target(table[config.target].loc[labelled], classes)
    sub = evaluation.Outputs(
        outputs[PREDICTION_COLUMN].to_numpy()[labelled],
        None if proba is None else proba[labelled],
        classes,
    )
    realised = evaluation.compute_metrics(y, sub, config)
    intervals = realised_intervals(y, sub, realised, config)
    spec = config.monitoring
    confidence = spec.quality_interval.confidence
    if coverage < spec.min_label_coverage:
        note = (
            f"label coverage {coverage:.0%} is below monitoring.min_label_coverage "
            f"{spec.min_label_coverage:.0%}: realised quality reported, not judged"
        )
        return Quality(
            count, realised, holdout, estimated, note, rows, coverage, intervals, confidence
        )
    checks = quality_checks(realised, intervals, holdout, config)
    return Quality(
        count, realised, holdout, estimated, "", rows, coverage, intervals, confidence, checks
    )


@dataclass(frozen=True)
class Decision:
    status: Status
    reasons: list[str]
    incident_kinds: list[str] = field(default_factory=list)
    # Incident kind -> severity ("high", "critical"), for the kinds this decision opens.
    severities: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return to_json_dict(self)


def _drift_reasons(
    features: DriftResult, config: PipelineConfig
) -> tuple[list[str], list[str], list[str]]:
    """(drift reasons, warning reasons, notes) from the feature drift: the plain share, the
    importance-weighted share and the critical columns."""
    spec = config.monitoring
    drift: list[str] = []
    warning: list[str] = []
    notes: list[str] = []
    drifted = features.drifted_columns
    share = features.share_drifted
    plain = f"{len(drifted)} of {len(features.tested)} features drifted ({share:.0%}"
    if features.dataset_drift:
        drift.append(f"{plain} >= drift_share {spec.drift_share:.0%}): {', '.join(drifted)}")
    weighted = features.weighted_share
    if spec.drift_share_weighted is not None:
        if features.weights is None:
            notes.append(
                "the champion's reference records no permutation importance (recorded before "
                "it was stored): drift is judged by the plain share only"
            )
        elif weighted is None:
            notes.append(
                "no tested feature has a positive permutation importance: drift is judged by "
                "the plain share only"
            )
        elif drifted and weighted >= spec.drift_share_weighted:
            drift.append(
                f"the drifted features ({', '.join(drifted)}) carry {weighted:.1%} of the "
                f"model's permutation importance (>= drift_share_weighted "
                f"{spec.drift_share_weighted:.0%})"
            )
    critical = [c for c in drifted if (rule := spec.columns.get(c)) is not None and rule.critical]
    if critical:
        drift.append(f"critical feature(s) drifted: {', '.join(critical)}")
    if not drift and drifted and share >= spec.warning_share:
        weight = "" if weighted is None else f"; {weighted:.1%} of the importance"
        warning.append(
            f"{plain} >= warning_share {spec.warning_share:.0%}{weight}): {', '.join(drifted)}"
        )
    return drift, warning, notes


def decide(
    features: DriftResult,
    prediction: ColumnDrift | None,
    quality: Quality | None,
    findings: list[Finding],
    config: PipelineConfig,
) -> Decision:
    """Drift beats warning beats ok; every reason is listed, not only the deciding one, and
    then what was looked at without moving the status (quality within noise, a legacy
    reference without importance)."""
    spec = config.monitoring
    drift, warning, notes = _drift_reasons(features, config)
    kinds: list[str] = ["drift"] if drift else []
    severities: dict[str, str] = {"drift": "high"} if drift else {}
    if prediction is not None and prediction.drifted and spec.prediction_drift != "ignore":
        text = f"the champion's predictions drifted ({prediction.method} {prediction.score:.3g})"
        if spec.prediction_drift == "drift":
            drift.append(text)
            if "drift" not in kinds:
                kinds.append("drift")
                severities["drift"] = "high"
        else:
            warning.append(text)
    if quality is not None:
        if quality.note:
            notes.append(f"quality: {quality.note}")
        for check in quality.checks:
            if check.verdict == "breach":
                drift.append(check.detail)
                if "quality" not in kinds:
                    kinds.append("quality")
                severe = "critical" if check.rule == "floor" else "high"
                if severities.get("quality") != "critical":
                    severities["quality"] = severe
            elif check.verdict in ("within_noise", "not_judged"):
                notes.append(check.detail)
    warning += [f.message for f in findings if f.severity == "warning"]
    if drift:
        return Decision(Status.drift, drift + warning + notes, kinds, severities)
    if warning:
        return Decision(Status.warning, warning + notes)
    return Decision(Status.ok, ["no feature, prediction or quality threshold was crossed", *notes])


def too_few_rows(rows: int, config: PipelineConfig) -> str | None:
    minimum = config.monitoring.min_rows
    if rows < minimum:
        return f"the window has {rows} rows, fewer than monitoring.min_rows {minimum}: no verdict"
    return None

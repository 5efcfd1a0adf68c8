"""How drift, quality and schema findings become one status, and the reasons for it.

No Prefect here; `tasks/monitoring.py` wraps these steps and `flows/monitoring.py` wires them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd

from modelcycle import evaluation
from modelcycle.config import PipelineConfig, higher_is_better
from modelcycle.monitoring._drift import ColumnDrift, ColumnRule, DriftResult, Method
from modelcycle.monitoring._drift import column_drift as _column_drift
from modelcycle.monitoring._drift import dataset_drift as _dataset_drift
from modelcycle.monitoring._performance import estimate
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


def feature_drift(reference: Reference, inputs: pd.DataFrame, config: PipelineConfig):
    """Every feature, column by column, against the reference sample."""
    return _dataset_drift(
        reference.data,
        inputs,
        feature_kinds(config),
        drift_rules(config),
        config.monitoring.drift_share,
        two_sample_chisquare=config.monitoring.chisquare == "two_sample",
    )


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


@dataclass(frozen=True)
class Quality:
    labelled_rows: int
    realised: dict[str, float] | None
    holdout: dict[str, float]
    estimated: dict[str, float] | None
    note: str = ""

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


def assess_quality(
    window: Window,
    outputs: pd.DataFrame,
    proba: np.ndarray | None,
    classes: np.ndarray | None,
    reference: Reference,
    config: PipelineConfig,
) -> Quality:
    """Realised metrics on the labelled rows, next to the holdout figures and the estimate."""
    holdout = dict(reference.meta.get("holdout_metrics", {}))
    estimated = None
    calibration = reference.calibration
    if calibration is not None and SCORE_COLUMN in outputs:
        assert classes is not None
        pos = evaluation.positive_class(config, classes)
        predicted_positive = outputs[PREDICTION_COLUMN].to_numpy() == pos
        estimated = estimate(outputs[SCORE_COLUMN].to_numpy(), predicted_positive, calibration)
    table = window.table
    if config.target not in table.columns:
        return Quality(0, None, holdout, estimated, "no target column in the window")
    labelled = table[config.target].notna().to_numpy()
    count = int(labelled.sum())
    if count < config.monitoring.min_rows:
        note = f"{count} labelled rows, fewer than monitoring.min_rows {config.monitoring.min_rows}"
        return Quality(count, None, holdout, estimated, note)
    y = _typed_target(table[config.target].loc[labelled], classes)
    sub = evaluation.Outputs(
        outputs[PREDICTION_COLUMN].to_numpy()[labelled],
        None if proba is None else proba[labelled],
        classes,
    )
    realised = evaluation.compute_metrics(y, sub, config)
    return Quality(count, realised, holdout, estimated)


@dataclass(frozen=True)
class Decision:
    status: Status
    reasons: list[str]
    incident_kinds: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return to_json_dict(self)


def _worse(metric: str, value: float, than: float) -> float:
    """How much worse `value` is than `than` (positive = worse)."""
    return than - value if higher_is_better(metric) else value - than


def decide(
    features: DriftResult,
    prediction: ColumnDrift | None,
    quality: Quality | None,
    findings: list[Finding],
    config: PipelineConfig,
) -> Decision:
    """Drift beats warning beats ok; every reason is listed, not only the deciding one."""
    spec = config.monitoring
    drift: list[str] = []
    warning: list[str] = []
    kinds: list[str] = []
    drifted = features.drifted_columns
    share = features.share_drifted
    if features.dataset_drift:
        drift.append(
            f"{len(drifted)} of {len(features.tested)} features drifted ({share:.0%} >= "
            f"drift_share {spec.drift_share:.0%}): {', '.join(drifted)}"
        )
        kinds.append("drift")
    elif drifted and share >= spec.warning_share:
        warning.append(
            f"{len(drifted)} of {len(features.tested)} features drifted ({share:.0%} >= "
            f"warning_share {spec.warning_share:.0%}): {', '.join(drifted)}"
        )
    if prediction is not None and prediction.drifted and spec.prediction_drift != "ignore":
        text = f"the champion's predictions drifted ({prediction.method} {prediction.score:.3g})"
        if spec.prediction_drift == "drift":
            drift.append(text)
            if "drift" not in kinds:
                kinds.append("drift")
        else:
            warning.append(text)
    for problem, below_floor in _quality_problems(quality, config):
        (drift if below_floor else warning).append(problem)
        if below_floor and "quality" not in kinds:
            kinds.append("quality")
    warning += [f.message for f in findings if f.severity == "warning"]
    if drift:
        return Decision(Status.drift, drift + warning, kinds)
    if warning:
        return Decision(Status.warning, warning)
    return Decision(Status.ok, ["no feature, prediction or quality threshold was crossed"])


def _quality_problems(quality: Quality | None, config: PipelineConfig) -> list[tuple[str, bool]]:
    if quality is None or quality.realised is None:
        return []
    problems = []
    for metric, value in quality.realised.items():
        if value is None or math.isnan(value):
            continue
        floor = config.gate.floors.get(metric)
        if floor is not None and _worse(metric, value, floor) > 0:
            problems.append((f"realised {metric} {value:.4f} is past its gate floor {floor}", True))
            continue
        holdout = quality.holdout.get(metric)
        if holdout is None:
            continue
        drop = _worse(metric, value, holdout)
        allowed = config.monitoring.max_quality_drop
        if drop > allowed:
            text = (
                f"realised {metric} {value:.4f} is {drop:.4f} worse than on the holdout "
                f"({holdout:.4f}), more than max_quality_drop {allowed}"
            )
            problems.append((text, False))
    return problems


def too_few_rows(rows: int, config: PipelineConfig) -> str | None:
    minimum = config.monitoring.min_rows
    if rows < minimum:
        return f"the window has {rows} rows, fewer than monitoring.min_rows {minimum}: no verdict"
    return None

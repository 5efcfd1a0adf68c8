"""Monitoring as pure functions: the reference a version is watched against, the window it
is compared with, and how drift, quality and schema findings become one status.

No Prefect here; `tasks/monitoring.py` wraps these steps and `flows/monitoring.py` wires them.
"""

from __future__ import annotations

import glob
import io
import json
import math
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from modelcycle import data, evaluation
from modelcycle.config import PipelineConfig, TimeRange, higher_is_better
from modelcycle.errors import DataError, DataValidationError
from modelcycle.monitoring._drift import ColumnDrift, ColumnKind, ColumnRule, DriftResult, Method
from modelcycle.monitoring._drift import column_drift as _column_drift
from modelcycle.monitoring._drift import dataset_drift as _dataset_drift
from modelcycle.monitoring._performance import Calibration, estimate, fit_calibration
from modelcycle.utils import json_ready

REFERENCE_DATA = "reference/data.parquet"
REFERENCE_PREDICTIONS = "reference/predictions.parquet"
REFERENCE_META = "reference/reference.json"
REFERENCE_FILES = (REFERENCE_DATA, REFERENCE_PREDICTIONS, REFERENCE_META)
WINDOW_SUFFIXES = (".csv", ".parquet")
PREDICTION_COLUMN = "prediction"
SCORE_COLUMN = "score"


class Status(StrEnum):
    ok = "ok"
    warning = "warning"
    drift = "drift"
    no_verdict = "no_verdict"


# --- the reference, written at training time -----------------------------------------------


@dataclass(frozen=True)
class Reference:
    """Sampled training rows (features and target), the model's outputs on them, and facts."""

    data: pd.DataFrame
    predictions: pd.DataFrame
    meta: dict[str, Any]

    @property
    def calibration(self) -> Calibration | None:
        raw = self.meta.get("calibration")
        return Calibration.from_dict(raw) if raw else None

    def files(self) -> dict[str, bytes]:
        """File name in the run folder -> bytes."""
        return {
            REFERENCE_DATA: _parquet_bytes(self.data),
            REFERENCE_PREDICTIONS: _parquet_bytes(self.predictions),
            REFERENCE_META: json.dumps(json_ready(self.meta), indent=2, sort_keys=True).encode(),
        }

    @classmethod
    def from_files(cls, files: dict[str, bytes]) -> Reference:
        return cls(
            data=pd.read_parquet(io.BytesIO(files[REFERENCE_DATA])),
            predictions=pd.read_parquet(io.BytesIO(files[REFERENCE_PREDICTIONS])),
            meta=json.loads(files[REFERENCE_META]),
        )


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def feature_kinds(config: PipelineConfig) -> dict[str, ColumnKind]:
    return {
        **dict.fromkeys(config.features.numeric, ColumnKind.numeric),
        **dict.fromkeys(config.features.categorical, ColumnKind.categorical),
    }


def score(pipeline: Pipeline, X: pd.DataFrame, config: PipelineConfig) -> evaluation.Outputs:
    """The model's outputs from one pass: a classifier's label is the most probable class.

    `evaluation.predict_outputs` calls predict and predict_proba, which for tree ensembles
    walks every tree twice; on a million rows that is most of a monitoring run. scikit-learn
    classifiers predict the arg-max of predict_proba (up to exact ties).
    """
    if not config.task.is_classification or not hasattr(pipeline, "predict_proba"):
        return evaluation.predict_outputs(pipeline, X, config)
    proba = pipeline.predict_proba(X)
    classes = np.asarray(pipeline.classes_)
    return evaluation.Outputs(classes[np.argmax(proba, axis=1)], proba, classes)


def model_outputs(pipeline: Pipeline, X: pd.DataFrame, config: PipelineConfig) -> pd.DataFrame:
    """What prediction drift compares: the label (or value), and the positive-class score."""
    return model_outputs_from(score(pipeline, X, config), config)


def model_outputs_from(outputs: evaluation.Outputs, config: PipelineConfig) -> pd.DataFrame:
    frame = pd.DataFrame({PREDICTION_COLUMN: outputs.pred})
    if config.task.value == "binary_classification" and outputs.proba is not None:
        assert outputs.classes is not None
        pos = evaluation.positive_class(config, outputs.classes)
        index = int(np.flatnonzero(outputs.classes == pos)[0])
        frame[SCORE_COLUMN] = outputs.proba[:, index]
    return frame


def prediction_kind(config: PipelineConfig) -> tuple[str, ColumnKind]:
    """Binary: the score; multiclass: the label; regression: the value."""
    if config.task.value == "binary_classification":
        return SCORE_COLUMN, ColumnKind.numeric
    if config.task.is_classification:
        return PREDICTION_COLUMN, ColumnKind.categorical
    return PREDICTION_COLUMN, ColumnKind.numeric


def build_reference(
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    pipeline: Pipeline,
    config: PipelineConfig,
    holdout_metrics: dict[str, float],
    config_path: str,
) -> Reference:
    """A bounded random sample of the training rows, with the model's outputs on it.

    For a binary classifier the holdout also fits the calibration map that label-free
    performance estimation needs (see modelcycle.performance).
    """
    limit = config.monitoring.reference_rows
    columns = [*config.features.all, config.target]
    sample = train if len(train) <= limit else train.sample(n=limit, random_state=config.split.seed)
    sample = sample[columns].reset_index(drop=True)
    X, _ = data.features_and_target(sample, config)
    predictions = model_outputs(pipeline, X, config)
    calibration = None
    if SCORE_COLUMN in predictions:
        X_hold, y_hold = data.features_and_target(holdout, config)
        hold = model_outputs(pipeline, X_hold, config)
        pos = evaluation.positive_class(config, np.asarray(pipeline.classes_))
        calibration = fit_calibration(np.asarray(y_hold) == pos, hold[SCORE_COLUMN].to_numpy())
    meta = {
        "training_rows": len(train),
        "rows": len(sample),
        "sampled": len(sample) < len(train),
        "seed": config.split.seed,
        "columns": {name: kind.value for name, kind in feature_kinds(config).items()},
        "target": config.target,
        "holdout_rows": len(holdout),
        "holdout_metrics": holdout_metrics,
        "config_path": str(Path(config_path).resolve()),
        "retrain_mode": config.monitoring.retrain_mode,
        "calibration": calibration.to_dict() if calibration else None,
    }
    return Reference(sample, predictions, meta)


# --- the window ---------------------------------------------------------------------------


def resolve_pattern(window: str, home: Path) -> str:
    """As given if it matches something; else relative to the modelcycle home folder."""
    if Path(window).is_absolute() or glob.glob(window):
        return window
    under_home = str(Path(home) / window)
    return under_home if glob.glob(under_home) else window


def window_files(pattern: str, latest_only: bool = False) -> list[Path]:
    """Files matching a path or glob, sorted by name; `latest_only` keeps the last one."""
    if glob.has_magic(pattern):
        paths = sorted(Path(p) for p in glob.glob(pattern))
        if not paths:
            raise DataError(f"window {pattern!r}: no file matches")
    else:
        paths = [Path(pattern)]
        if not paths[0].is_file():
            raise DataError(f"window {pattern}: file not found")
    wrong = [str(p) for p in paths if p.suffix.lower() not in WINDOW_SUFFIXES]
    if wrong:
        raise DataError(f"window {pattern!r}: expected .csv or .parquet files, got {wrong}")
    return paths[-1:] if latest_only else paths


@dataclass(frozen=True)
class Window:
    table: pd.DataFrame
    pattern: str
    files: list[str]
    rows_read: int
    unexpected_columns: list[str]
    time_range: dict[str, float | None] | None

    def facts(self) -> dict[str, Any]:
        """What was read, for the evidence folder and the report (not the rows)."""
        return {
            "pattern": self.pattern,
            "files": self.files,
            "rows": len(self.table),
            "rows_read": self.rows_read,
            "time_range": self.time_range,
            "unexpected_columns": self.unexpected_columns,
        }


def read_window(
    files: list[Path],
    config: PipelineConfig,
    time_range: TimeRange | None = None,
    pattern: str | None = None,
) -> Window:
    """Read every file, drop PII columns at once, keep the model's columns, apply the range."""
    parts = []
    unexpected: set[str] = set()
    for path in files:
        raw = data.read_file(path)
        kept = [c for c in raw.columns if c in config.used_columns]
        unexpected |= {c for c in raw.columns if c not in kept and c not in config.pii_columns}
        parts.append(raw[kept])
        del raw  # PII never outlives this loop
    table = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    rows_read = len(table)
    where = ", ".join(str(f) for f in files)
    if time_range is not None:
        table = _in_range(table, config, time_range, where)
    if table.empty:
        extra = f" in time range {time_range.model_dump()}" if time_range else ""
        raise DataError(f"window {where}: no rows{extra}")
    return Window(
        table=table,
        pattern=pattern or where,
        files=[str(f) for f in files],
        rows_read=rows_read,
        unexpected_columns=sorted(unexpected),
        time_range=time_range.model_dump() if time_range else None,
    )


def _in_range(table: pd.DataFrame, config: PipelineConfig, window: TimeRange, where: str):
    column = config.time_column
    if column is None:
        raise DataError("time_range given but the config declares no time_column")
    if column not in table.columns:
        raise DataError(f"window {where}: time_range needs column {column!r}, which is missing")
    return data.rows_between(table, column, window.start, window.end)


@dataclass(frozen=True)
class Finding:
    """Something about the window that is not drift but is worth a person's attention."""

    severity: str  # "warning" changes the status; "info" is reported only
    column: str | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_window(window: Window, config: PipelineConfig) -> list[Finding]:
    """Schema findings; a missing feature is fatal because the champion cannot score rows."""
    table = window.table
    missing = [c for c in config.features.all if c not in table.columns]
    if missing:
        raise DataValidationError(
            ", ".join(window.files),
            [f"missing column {c!r}, which the model needs as a feature" for c in missing],
        )
    findings = [
        Finding("info", c, f"unexpected column {c!r} is not used by the model; ignored")
        for c in window.unexpected_columns
    ]
    for column in [*config.features.all, *_present(table, config)]:
        for message in data.column_violations(column, table[column], config):
            findings.append(Finding("warning", column, message))
    if config.target in table.columns:
        labelled = int(table[config.target].notna().sum())
        if 0 < labelled < len(table):
            findings.append(
                Finding(
                    "info",
                    config.target,
                    f"target {config.target!r} present for {labelled} of {len(table)} rows; "
                    "quality is measured on those rows only",
                )
            )
    return findings


def _present(table: pd.DataFrame, config: PipelineConfig) -> list[str]:
    extra = [config.target, config.time_column, *config.sensitive_columns]
    return [c for c in dict.fromkeys(extra) if c and c in table.columns and c != config.target]


def model_inputs(table: pd.DataFrame, config: PipelineConfig) -> pd.DataFrame:
    """Features typed as in training; values the schema calls invalid become missing."""
    return pd.DataFrame(
        {c: data.typed_valid(table[c], config, c) for c in config.features.all}, index=table.index
    )


# --- drift, quality, estimate, status -------------------------------------------------------


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
        return json_ready(asdict(self))


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
        return {
            "status": self.status.value,
            "reasons": self.reasons,
            "incident_kinds": self.incident_kinds,
        }


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

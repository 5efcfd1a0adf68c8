"""The reference a version is watched against: a bounded sample of its training rows, the
model's outputs on them, and the facts monitoring needs later (written at training time, read
back from the version's run folder)."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from modelcycle import data, evaluation
from modelcycle.config import PipelineConfig
from modelcycle.monitoring._drift import ColumnKind
from modelcycle.monitoring._performance import Calibration, fit_calibration
from modelcycle.utils import json_ready

REFERENCE_DATA = "reference/data.parquet"
REFERENCE_PREDICTIONS = "reference/predictions.parquet"
REFERENCE_META = "reference/reference.json"
REFERENCE_FILES = (REFERENCE_DATA, REFERENCE_PREDICTIONS, REFERENCE_META)
PREDICTION_COLUMN = "prediction"
SCORE_COLUMN = "score"


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

    @property
    def importance(self) -> dict[str, float] | None:
        """Feature -> mean permutation importance at training time; None for a reference
        recorded before importance was stored with it."""
        raw = self.meta.get("importance")
        return {str(k): float(v) for k, v in raw["mean"].items()} if raw else None

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


def _importance_meta(table: pd.DataFrame | None) -> dict[str, Any] | None:
    if table is None or table.empty:
        return None
    first = table.iloc[0]
    return {
        "metric": str(first["metric"]),
        "rows": int(first["rows"]),
        "repeats": int(first["repeats"]),
        "mean": {str(r.feature): float(r.importance_mean) for r in table.itertuples()},
        "std": {str(r.feature): float(r.importance_std) for r in table.itertuples()},
    }


def build_reference(
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    pipeline: Pipeline,
    config: PipelineConfig,
    holdout_metrics: dict[str, float],
    config_path: str,
    importance: pd.DataFrame | None = None,
) -> Reference:
    """A bounded random sample of the training rows, with the model's outputs on it.

    For a binary classifier the holdout also fits the calibration map that label-free
    performance estimation needs (see `_performance`). The permutation importance of the
    version (`evaluation.importance_table`) is kept so that monitoring can weigh drift by
    what the model uses.
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
        "importance": _importance_meta(importance),
    }
    return Reference(sample, predictions, meta)

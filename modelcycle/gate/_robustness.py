"""Robustness and budget evidence: what the fitted pipeline does with inputs it was not shown.

- noise: small Gaussian noise on numeric features; how many predictions change;
- edge cases: missing values, unseen categories, out-of-range numbers must still get a
  prediction (no exception), and each kind is counted;
- counterfactual: changing only a sensitive column (when it is a model input) changes few
  predictions;
- budgets: prediction latency per 1,000 rows and model file size.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from modelcycle.config import PipelineConfig
from modelcycle.data import MISSING_GROUP, features_and_target, group_labels

UNSEEN = "__modelcycle_unseen__"
_EDGE_ROWS = 25  # base rows per edge-case kind and column


def _sample(holdout: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    if len(holdout) <= rows:
        return holdout
    return holdout.sample(n=rows, random_state=seed)


def _predict(pipeline: Pipeline, X: pd.DataFrame) -> np.ndarray:
    return np.asarray(pipeline.predict(X))


def _changed(base: np.ndarray, new: np.ndarray, classification: bool, target_std: float) -> float:
    if classification:
        return float(np.mean(base != new))
    scale = target_std if target_std > 0 else 1.0
    return float(np.mean(np.abs(new.astype(float) - base.astype(float))) / scale)


def _noisy(X: pd.DataFrame, config: PipelineConfig, rng: np.random.Generator) -> pd.DataFrame:
    noise = config.gate.robustness.noise
    changed = {}
    for column in config.features.numeric:
        values = pd.to_numeric(X[column], errors="coerce").astype("float64")
        std = float(values.std())
        if np.isfinite(std) and std > 0:
            changed[column] = values + rng.normal(0.0, noise * std, len(values))
    return X.assign(**changed)


def _all_missing(column: pd.Series) -> pd.Series:
    return column.where(pd.Series(False, index=column.index))


def _numeric_bounds(X: pd.DataFrame, column: str, config: PipelineConfig) -> tuple[float, float]:
    values = pd.to_numeric(X[column], errors="coerce")
    schema = config.columns.get(column)
    low = schema.min if schema and schema.min is not None else float(values.min())
    high = schema.max if schema and schema.max is not None else float(values.max())
    return low, high


def edge_cases(X: pd.DataFrame, config: PipelineConfig) -> dict[str, pd.DataFrame]:
    """Kind -> rows built from real rows with one thing made strange."""
    base = X.head(_EDGE_ROWS)
    missing = [base.assign(**{c: _all_missing(base[c])}) for c in config.features.all]
    missing.append(base.assign(**{c: _all_missing(base[c]) for c in config.features.all}))
    unseen = [base.assign(**{c: UNSEEN}) for c in config.features.categorical]
    out_of_range = []
    for column in config.features.numeric:
        low, high = _numeric_bounds(X, column, config)
        span = (high - low) if np.isfinite(high - low) and high > low else 1.0
        out_of_range.append(base.assign(**{column: high + 10 * span}))
        out_of_range.append(base.assign(**{column: low - 10 * span}))
    kinds = {"missing_values": missing, "unseen_categories": unseen, "out_of_range": out_of_range}
    return {k: pd.concat(v, ignore_index=True) for k, v in kinds.items() if v}


def _try_predict(pipeline: Pipeline, rows: pd.DataFrame, config: PipelineConfig) -> dict[str, Any]:
    """Rows that got a usable prediction; per-row retries only when the batch raised."""
    try:
        predictions = _predict(pipeline, rows)
        failures: list[str] = []
    except Exception as exc:  # any exception here is the finding, not a crash of the gate
        predictions, failures = None, [f"batch: {type(exc).__name__}: {exc}"]
    if predictions is None:
        ok = 0
        for i in range(len(rows)):
            try:
                _predict(pipeline, rows.iloc[[i]])
                ok += 1
            except Exception as exc:
                if len(failures) < 5:
                    failures.append(f"row {i}: {type(exc).__name__}: {exc}")
        return {"rows": len(rows), "predicted": ok, "failed": len(rows) - ok, "errors": failures}
    if config.task.is_classification:
        usable = np.isin(predictions, np.asarray(pipeline.classes_))
    else:
        usable = np.isfinite(predictions.astype("float64"))
    bad = int((~usable).sum())
    errors = [f"{bad} predictions outside the known classes or not finite"] if bad else []
    return {"rows": len(rows), "predicted": len(rows) - bad, "failed": bad, "errors": errors}


def _measure(config: PipelineConfig) -> str:
    """What `_changed` returns: a share of labels, or a mean change in target std units."""
    return "flip_rate" if config.task.is_classification else "mean_change_in_target_std"


def _counterfactual(
    pipeline: Pipeline,
    sample: pd.DataFrame,
    X: pd.DataFrame,
    base: np.ndarray,
    config: PipelineConfig,
    target_std: float,
) -> dict[str, Any]:
    report: dict[str, Any] = {}
    measure = _measure(config)
    for column in config.sensitive_columns:
        if column not in config.features.all:
            report[column] = {"used_as_feature": False, "change_rate": 0.0, "measure": measure}
            continue
        labels = group_labels(sample[column])
        groups = sorted(g for g in set(labels.tolist()) if g != MISSING_GROUP)
        if len(groups) < 2:
            report[column] = {
                "used_as_feature": True,
                "change_rate": None,
                "groups": groups,
                "measure": measure,
            }
            continue
        swap = {g: groups[(i + 1) % len(groups)] for i, g in enumerate(groups)}
        swapped = pd.Series([swap.get(v, v) for v in labels], index=X.index)
        original = X[column]
        if pd.api.types.is_numeric_dtype(original):
            swapped = pd.to_numeric(swapped, errors="coerce")
        else:
            swapped = swapped.where(labels != MISSING_GROUP, original)
        flipped = _predict(pipeline, X.assign(**{column: swapped}))
        report[column] = {
            "used_as_feature": True,
            "change_rate": _changed(base, flipped, config.task.is_classification, target_std),
            "groups": groups,
            "measure": measure,
        }
    return report


def robustness_evidence(
    pipeline: Pipeline, holdout: pd.DataFrame, config: PipelineConfig
) -> dict[str, Any]:
    """Noise stability, edge-case coverage and counterfactual stability on sampled rows."""
    spec = config.gate.robustness
    sample = _sample(holdout, spec.rows, spec.seed)
    X, y = features_and_target(sample, config)
    classification = config.task.is_classification
    target_std = 0.0 if classification else float(pd.to_numeric(y).std())
    rng = np.random.default_rng(spec.seed)
    base = _predict(pipeline, X)
    noisy = _predict(pipeline, _noisy(X, config, rng))
    edge = {
        kind: _try_predict(pipeline, rows, config) for kind, rows in edge_cases(X, config).items()
    }
    return {
        "rows": len(sample),
        "noise": {
            "scale_in_std": spec.noise,
            "measure": _measure(config),
            "value": _changed(base, noisy, classification, target_std),
        },
        "edge_cases": edge,
        "counterfactual": _counterfactual(pipeline, sample, X, base, config, target_std),
    }


def budget_evidence(
    pipeline: Pipeline, holdout: pd.DataFrame, config: PipelineConfig, model_bytes: int
) -> dict[str, Any]:
    """Median of three timed predictions of 1,000 rows (after one warm-up) and the file size."""
    X, _ = features_and_target(holdout, config)
    rows = X.sample(n=1000, replace=len(X) < 1000, random_state=config.split.seed)
    _predict(pipeline, rows)
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        _predict(pipeline, rows)
        timings.append((time.perf_counter() - start) * 1000.0)
    return {
        "latency_ms_per_1000": float(np.median(timings)),
        "latency_runs_ms": timings,
        "model_bytes": model_bytes,
        "model_mb": model_bytes / 1_000_000,
    }

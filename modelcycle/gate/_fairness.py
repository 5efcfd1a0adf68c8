"""Group fairness evidence across sensitive columns, from holdout predictions.

Classification: per group, the selection rate (share predicted as the class) and the
true-positive rate (recall); the gaps and ratios between the groups large enough to judge.
Regression: per group, the mean error (prediction - truth). The gate turns these into checks.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from modelcycle.config import PipelineConfig
from modelcycle.data import group_labels
from modelcycle.errors import DataError
from modelcycle.evaluation import Outputs, positive_class


def _classes_judged(config: PipelineConfig, outputs: Outputs) -> list[Any]:
    """Binary: the positive class only; multiclass: every class, the worst one counts."""
    assert outputs.classes is not None
    if config.task.value == "binary_classification":
        return [positive_class(config, outputs.classes)]
    return list(outputs.classes)


def _rate(mask: np.ndarray, within: np.ndarray) -> float:
    n = int(within.sum())
    return float((mask & within).sum() / n) if n else math.nan


def _gap_and_ratio(values: list[float]) -> tuple[float | None, float | None]:
    finite = [v for v in values if math.isfinite(v)]
    if len(finite) < 2:
        return None, None
    high, low = max(finite), min(finite)
    return high - low, (low / high if high > 0 else 1.0)


def _worst(per_class: list[tuple[float | None, float | None]]) -> tuple[float | None, ...]:
    gaps = [g for g, _ in per_class if g is not None]
    ratios = [r for _, r in per_class if r is not None]
    return (max(gaps) if gaps else None, min(ratios) if ratios else None)


def _classification_column(
    labels: np.ndarray, y: np.ndarray, outputs: Outputs, config: PipelineConfig
) -> dict[str, Any]:
    min_rows = config.gate.fairness.min_group_rows
    groups = []
    for group in sorted(set(labels.tolist())):
        member = labels == group
        rows = int(member.sum())
        entry: dict[str, Any] = {"group": group, "rows": rows, "judged": rows >= min_rows}
        entry["selection_rate"] = {
            str(c): _rate(outputs.pred == c, member) for c in _classes_judged(config, outputs)
        }
        entry["true_positive_rate"] = {
            str(c): _rate(outputs.pred == c, member & (y == c))
            for c in _classes_judged(config, outputs)
        }
        groups.append(entry)
    judged = [g for g in groups if g["judged"]]
    selection, tpr = [], []
    for c in _classes_judged(config, outputs):
        selection.append(_gap_and_ratio([g["selection_rate"][str(c)] for g in judged]))
        tpr.append(_gap_and_ratio([g["true_positive_rate"][str(c)] for g in judged]))
    selection_gap, selection_ratio = _worst(selection)
    tpr_gap, tpr_ratio = _worst(tpr)
    return {
        "groups": groups,
        "judged_groups": len(judged),
        "selection_rate_gap": selection_gap,
        "selection_rate_ratio": selection_ratio,
        "tpr_gap": tpr_gap,
        "tpr_ratio": tpr_ratio,
    }


def _regression_column(
    labels: np.ndarray, y: np.ndarray, outputs: Outputs, config: PipelineConfig
) -> dict[str, Any]:
    min_rows = config.gate.fairness.min_group_rows
    error = outputs.pred - y.astype("float64")
    groups = []
    for group in sorted(set(labels.tolist())):
        member = labels == group
        rows = int(member.sum())
        groups.append(
            {
                "group": group,
                "rows": rows,
                "judged": rows >= min_rows,
                "mean_error": float(error[member].mean()) if rows else math.nan,
                "mean_absolute_error": float(np.abs(error[member]).mean()) if rows else math.nan,
            }
        )
    judged = [g["mean_error"] for g in groups if g["judged"]]
    gap = max(judged) - min(judged) if len(judged) >= 2 else None
    return {"groups": groups, "judged_groups": len(judged), "mean_error_gap": gap}


def fairness_evidence(
    holdout: pd.DataFrame, outputs: Outputs, config: PipelineConfig
) -> dict[str, dict[str, Any]]:
    """Sensitive column -> per-group rates and the gaps between judged groups."""
    missing = [c for c in config.sensitive_columns if c not in holdout.columns]
    if missing:
        raise DataError(
            f"holdout has no sensitive column(s) {missing} (listed in sensitive_columns); "
            f"columns present: {sorted(map(str, holdout.columns))}"
        )
    y = holdout[config.target].to_numpy()
    report = {}
    for column in config.sensitive_columns:
        labels = group_labels(holdout[column])
        if config.task.is_classification:
            report[column] = _classification_column(labels, y, outputs, config)
        else:
            report[column] = _regression_column(labels, y, outputs, config)
    return report

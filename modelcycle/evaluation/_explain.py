"""Permutation importance on the holdout: how much the primary metric drops when one input
column is shuffled. Computed on raw columns, so it speaks the data's language, not the
one-hot encoder's."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure
from sklearn.inspection import permutation_importance
from sklearn.pipeline import Pipeline

from modelcycle.config import PipelineConfig
from modelcycle.data import features_and_target
from modelcycle.evaluation._metrics import scorer


def importance_table(
    pipeline: Pipeline, holdout: pd.DataFrame, config: PipelineConfig
) -> pd.DataFrame:
    """One row per feature: mean and std of the score drop, largest first."""
    rows = min(len(holdout), config.evaluation.importance_rows)
    sample = (
        holdout.sample(n=rows, random_state=config.split.seed) if rows < len(holdout) else holdout
    )
    X, y = features_and_target(sample, config)
    result = permutation_importance(
        pipeline,
        X,
        y,
        scoring=scorer(config),
        n_repeats=config.evaluation.importance_repeats,
        random_state=config.split.seed,
        n_jobs=1,
    )
    table = pd.DataFrame(
        {
            "feature": list(X.columns),
            "importance_mean": result.importances_mean,
            "importance_std": result.importances_std,
        }
    )
    table["metric"] = config.evaluation.primary_metric
    table["rows"] = len(X)
    table["repeats"] = config.evaluation.importance_repeats
    return table.sort_values("importance_mean", ascending=False, kind="stable").reset_index(
        drop=True
    )


def importance_plot(table: pd.DataFrame) -> Figure:
    ordered = table.iloc[::-1]
    fig = Figure(figsize=(6.0, 0.4 * len(table) + 1.5))
    ax = fig.add_subplot()
    ax.barh(ordered["feature"], ordered["importance_mean"], xerr=ordered["importance_std"])
    metric = table["metric"].iloc[0] if len(table) else "score"
    ax.set_title(f"Permutation importance on the holdout ({metric} drop)")
    ax.set_xlabel(f"mean drop in {metric} when shuffled")
    fig.tight_layout()
    return fig

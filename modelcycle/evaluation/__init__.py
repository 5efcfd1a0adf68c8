"""Evaluation on the holdout: metrics, per-slice metrics, plots and permutation importance."""

from modelcycle.evaluation._explain import (
    importance_plot,
    importance_table,
)
from modelcycle.evaluation._metrics import (
    PROBABILITY_METRICS,
    Outputs,
    compare,
    compute_metrics,
    metric_value,
    plots,
    positive_class,
    predict_outputs,
    scorer,
    slice_metrics,
    undefined_reason,
)
from modelcycle.evaluation._ranking import (
    auc_from_groups,
    average_precision_from_groups,
    ranking_counts,
    score_groups,
)
from modelcycle.evaluation._sequential import (
    SequentialBound,
    mixture_interval,
    two_sample_bound,
)

__all__ = [
    "PROBABILITY_METRICS",
    "Outputs",
    "SequentialBound",
    "auc_from_groups",
    "average_precision_from_groups",
    "compare",
    "compute_metrics",
    "importance_plot",
    "importance_table",
    "metric_value",
    "mixture_interval",
    "plots",
    "positive_class",
    "predict_outputs",
    "ranking_counts",
    "score_groups",
    "scorer",
    "slice_metrics",
    "two_sample_bound",
    "undefined_reason",
]

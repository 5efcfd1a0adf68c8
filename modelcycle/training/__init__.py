"""Training: one scikit-learn Pipeline from raw columns to predictions, searched, fitted or
fine-tuned."""

from modelcycle.training._pipeline import (
    CATEGORICAL_FILL,
    MODEL_STEP,
    TrainResult,
    build_pipeline,
    estimator_params,
    resolve_estimator,
    sample_weights,
)
from modelcycle.training._search import (
    SearchOutcome,
    Split,
    candidates,
    folds,
    rank,
    refit,
    score_candidate,
    search,
)
from modelcycle.training._train import fine_tune, supports_fine_tune, train

__all__ = [
    "CATEGORICAL_FILL",
    "MODEL_STEP",
    "SearchOutcome",
    "Split",
    "TrainResult",
    "build_pipeline",
    "candidates",
    "estimator_params",
    "fine_tune",
    "folds",
    "rank",
    "refit",
    "resolve_estimator",
    "sample_weights",
    "score_candidate",
    "search",
    "supports_fine_tune",
    "train",
]

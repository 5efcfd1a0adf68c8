"""Training: one scikit-learn Pipeline from raw columns to predictions, searched, fitted or
fine-tuned."""

from modelcycle.training._distil import (
    DEFAULT_STUDENT_PARAMS,
    DEFAULT_STUDENTS,
    DistilResult,
    distil,
    neighbours,
    student_spec,
)
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
    "DEFAULT_STUDENTS",
    "DEFAULT_STUDENT_PARAMS",
    "MODEL_STEP",
    "DistilResult",
    "SearchOutcome",
    "Split",
    "TrainResult",
    "build_pipeline",
    "candidates",
    "distil",
    "estimator_params",
    "fine_tune",
    "folds",
    "neighbours",
    "rank",
    "refit",
    "resolve_estimator",
    "sample_weights",
    "score_candidate",
    "search",
    "student_spec",
    "supports_fine_tune",
    "train",
]

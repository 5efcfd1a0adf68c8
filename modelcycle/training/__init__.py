"""Training: one scikit-learn Pipeline from raw columns to predictions, searched, fitted or
fine-tuned."""

from modelcycle.training._compile import (
    COMPILED_FILE,
    CompiledModel,
    CompileOutcome,
    NotCompilable,
    compile_pipeline,
    compile_with_parity,
    parity_evidence,
    runtime_version,
)
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
    "COMPILED_FILE",
    "DEFAULT_STUDENTS",
    "DEFAULT_STUDENT_PARAMS",
    "MODEL_STEP",
    "CompileOutcome",
    "CompiledModel",
    "DistilResult",
    "NotCompilable",
    "SearchOutcome",
    "Split",
    "TrainResult",
    "build_pipeline",
    "candidates",
    "compile_pipeline",
    "compile_with_parity",
    "distil",
    "estimator_params",
    "fine_tune",
    "folds",
    "neighbours",
    "parity_evidence",
    "rank",
    "refit",
    "resolve_estimator",
    "runtime_version",
    "sample_weights",
    "score_candidate",
    "search",
    "student_spec",
    "supports_fine_tune",
    "train",
]

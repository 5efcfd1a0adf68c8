"""The schema of one model pipeline, read from a YAML file in `configs/`.

Every default lives here, once: the CLI, the flows and the YAML files only override it.
Unknown keys are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_serializer,
    model_validator,
)

from modelcycle.errors import ConfigError

DEMO_SOURCE = "demo"
EXTENDS = "extends"
"""The key by which a pipeline config names its base, a path relative to itself."""

# Metric name -> (tasks it applies to, higher is better).
_CLASSIFICATION = ("binary_classification", "multiclass_classification")
METRICS: dict[str, tuple[tuple[str, ...], bool]] = {
    "roc_auc": (("binary_classification",), True),
    "average_precision": (("binary_classification",), True),
    "f1": (("binary_classification",), True),
    "precision": (("binary_classification",), True),
    "recall": (("binary_classification",), True),
    "brier": (("binary_classification",), False),
    "roc_auc_ovr": (("multiclass_classification",), True),
    "f1_macro": (("multiclass_classification",), True),
    "f1_weighted": (("multiclass_classification",), True),
    "accuracy": (_CLASSIFICATION, True),
    "balanced_accuracy": (_CLASSIFICATION, True),
    "log_loss": (_CLASSIFICATION, False),
    "rmse": (("regression",), False),
    "mae": (("regression",), False),
    "median_absolute_error": (("regression",), False),
    "r2": (("regression",), True),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrainingMode(StrEnum):
    # No docstring: pydantic would make it the schema's description of every field of this
    # type, replacing the flow parameter's own help in the Prefect UI form.
    scratch = "scratch"
    fine_tune = "fine_tune"
    distil = "distil"


class TaskType(StrEnum):
    binary_classification = "binary_classification"
    multiclass_classification = "multiclass_classification"
    regression = "regression"

    @property
    def is_classification(self) -> bool:
        return self is not TaskType.regression


class ColumnType(StrEnum):
    numeric = "numeric"
    integer = "integer"
    categorical = "categorical"
    boolean = "boolean"
    datetime = "datetime"


Share = Annotated[float, Field(ge=0.0, le=1.0)]


class ColumnSchema(_Strict):
    """What a column must look like; judged on the whole batch before anything is trained."""

    type: ColumnType
    min: float | None = Field(None, description="Lowest valid value (numeric, integer).")
    max: float | None = Field(None, description="Highest valid value (numeric, integer).")
    # Numbers stay numbers: `allowed: [1.0, 2.0]` on a numeric column compares as numbers.
    allowed: list[str | float] | None = Field(
        None, description="Allowed categories (categorical), compared with the column's type."
    )
    time_format: str | None = Field(
        None,
        description="datetime columns stored as text: a strftime format such as '%d/%m/%Y' "
        "(default: ISO 8601).",
    )
    max_missing_share: Share = Field(0.0, description="Largest share of missing values allowed.")
    max_invalid_share: Share = Field(
        0.0,
        description="Largest share of present values that may be out of range, not allowed, "
        "or not of the declared type; invalid values are then handled by `cleaning`.",
    )

    @model_validator(mode="after")
    def _check_bounds(self) -> ColumnSchema:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        numeric = self.type in (ColumnType.numeric, ColumnType.integer)
        if not numeric and (self.min is not None or self.max is not None):
            raise ValueError(f"min/max apply to numeric columns, not to type {self.type}")
        if self.allowed is not None and self.type is not ColumnType.categorical:
            raise ValueError(f"allowed applies to categorical columns, not to type {self.type}")
        if self.time_format is not None and self.type is not ColumnType.datetime:
            raise ValueError(f"time_format applies to datetime columns, not to type {self.type}")
        return self


def _time_bound(value: Any) -> Any:
    """A bound as its kind: a number (a year, epoch units) or an ISO date or datetime.

    Parsed here rather than by pydantic's union, which reads "2000" as 2000 seconds after 1970
    and "2017-10-01" as a datetime, losing that a date as an end means the whole day.
    """
    if value is None or isinstance(value, datetime | date):
        return value
    if isinstance(value, bool):
        raise ValueError("expected a date, a datetime or a number, not a boolean")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"expected a finite number (got {value!r})")
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            pass
        else:
            if math.isfinite(number):
                return number
        try:
            return date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
        except ValueError:
            pass
    raise ValueError(
        f"expected an ISO date (2017-10-01), an ISO datetime (2017-10-01T08:00) or a number "
        f"such as a year (got {value!r})"
    )


# datetime before date: a datetime is a date, and the Prefect UI offers the first format first.
TimeBound = Annotated[datetime | date | float | None, BeforeValidator(_time_bound)]


def bound_kind(bound: datetime | date | float | None) -> str | None:
    """`time` for dates and datetimes, `number` for numbers: what a column must hold to match."""
    if bound is None:
        return None
    return "time" if isinstance(bound, date) else "number"


class TimeRange(_Strict):
    """Rows kept by the time column, both ends included; a date as `end` includes that day."""

    start: TimeBound = Field(
        None, description="First time kept: an ISO date or datetime, or a number (e.g. a year)."
    )
    end: TimeBound = Field(
        None,
        description="Last time kept: a date includes the whole day; a number (e.g. a year) is "
        "compared as it is.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> TimeRange:
        kinds = {bound_kind(self.start), bound_kind(self.end)} - {None}
        if len(kinds) > 1:
            raise ValueError(
                f"start ({self.start!r}) and end ({self.end!r}) must both be dates/datetimes "
                "or both numbers"
            )
        if self.start is not None and self.end is not None:
            try:
                after = self.first_instant() > self.last_instant()  # type: ignore[operator]
            except TypeError:  # one has a time zone, the other not
                raise ValueError(
                    f"start ({self.start}) and end ({self.end}): give both a time zone or neither"
                ) from None
            if after:
                raise ValueError(f"start ({self.start}) is after end ({self.end})")
        return self

    def first_instant(self) -> datetime | float | None:
        """The start as a comparable value: a date is its midnight."""
        start = self.start
        if isinstance(start, date) and not isinstance(start, datetime):
            return datetime(start.year, start.month, start.day)
        return start

    def last_instant(self) -> datetime | float | None:
        """The end as an exclusive limit for dates (the next midnight), inclusive otherwise."""
        end = self.end
        if isinstance(end, date) and not isinstance(end, datetime):
            return datetime(end.year, end.month, end.day) + timedelta(days=1)
        return end

    @property
    def kind(self) -> str | None:
        return bound_kind(self.start) or bound_kind(self.end)

    def describe(self) -> str:
        """For people: `2002 to 2006`, `from 2017-10-01`, `up to 2000`."""
        start, end = _bound_text(self.start), _bound_text(self.end)
        if start and end:
            return f"{start} to {end}"
        return f"from {start}" if start else (f"up to {end}" if end else "all rows")


def _bound_text(bound: datetime | date | float | None) -> str:
    if bound is None:
        return ""
    if isinstance(bound, date):
        return bound.isoformat()
    return f"{bound:g}" if bound != int(bound) else str(int(bound))


class PinnedLogPart(_Strict):
    """One compacted part of the prediction log, named with the SHA-256 of its bytes."""

    path: str = Field(
        min_length=1,
        description="The part's path on the log's file system, under the log's root: "
        "`<root>/<model>/predictions|feedback/date=YYYY-MM-DD/part-*.parquet`.",
    )
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of its bytes.")


class PredictionLogSource(_Strict):
    """Labelled traffic as training rows: the logged inputs of one model's predictions joined
    by id to their feedback labels (the log's rule: the earliest label of an id counts)."""

    root: str | None = Field(
        None,
        description="Prediction log folder or fsspec URL (default $MODELCYCLE_HOME/predictions, "
        "where `modelcycle serve` writes).",
    )
    model: str | None = Field(
        None,
        pattern=r"^[a-z0-9][a-z0-9-]{0,62}$",
        description="Whose predictions to read (default: this config's name).",
    )
    since: datetime | date | None = Field(
        None, description="First prediction time kept (a date is its midnight UTC; naive is UTC)."
    )
    until: datetime | date | None = Field(
        None, description="Predictions before this time are kept (exclusive; naive is UTC)."
    )
    only: bool = Field(
        False,
        description="Train on the labelled log alone; false appends its rows to `source`.",
    )
    parts: list[PinnedLogPart] | None = Field(
        None,
        description="Read exactly these parts, each checked against its SHA-256, instead of "
        "listing the log as it is now (`since`/`until` still filter their rows); a part "
        "missing or changed is refused by name. `modelcycle models reproduce` sets it from "
        "a version's lineage.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> PredictionLogSource:
        since, until = self.since, self.until
        if since is not None and until is not None and log_instant(since) >= log_instant(until):
            raise ValueError(f"since ({self.since}) is not before until ({self.until})")
        paths = [part.path for part in self.parts or []]
        repeated = sorted({p for p in paths if paths.count(p) > 1})
        if repeated:
            raise ValueError(f"parts: {repeated[0]} is listed more than once")
        return self

    @model_serializer(mode="wrap")
    def _without_unset_parts(self, handler: Any) -> Any:
        """Without a pin the source dumps (and a config hashes) as before the field existed."""
        data = handler(self)
        if isinstance(data, dict) and self.parts is None:
            data.pop("parts", None)
        return data

    def describe(self) -> str:
        start = self.since.isoformat() if self.since is not None else ""
        end = self.until.isoformat() if self.until is not None else ""
        span = (
            f"{start} to {end}"
            if start and end
            else (f"from {start}" if start else (f"before {end}" if end else "all"))
        )
        pinned = f", exactly {len(self.parts)} recorded parts" if self.parts is not None else ""
        return f"labelled prediction log ({span}{pinned})"


def log_instant(bound: datetime | date) -> datetime:
    """A log bound as an aware UTC instant: a date is its midnight, a naive time is UTC."""
    if not isinstance(bound, datetime):
        return datetime(bound.year, bound.month, bound.day, tzinfo=UTC)
    return bound.replace(tzinfo=UTC) if bound.tzinfo is None else bound.astimezone(UTC)


class DataSource(_Strict):
    source: str = Field(
        description="CSV or Parquet file path (relative to the config file), or `demo` for "
        "the built-in GSS wages table.",
    )
    format: Literal["auto", "csv", "parquet"] = "auto"
    time_range: TimeRange | None = Field(
        None, description="Keep only rows whose time column falls in this range."
    )
    prediction_log: PredictionLogSource | None = Field(
        None,
        description="Also (or only) train on the labelled prediction log; `time_range` applies "
        "to `source`, the log has its own `since`/`until`.",
    )

    @property
    def is_demo(self) -> bool:
        return self.source == DEMO_SOURCE

    @model_serializer(mode="wrap")
    def _without_unset_log(self, handler: Any) -> Any:
        """A config without a log source dumps (and hashes) as before the field existed."""
        data = handler(self)
        if isinstance(data, dict) and self.prediction_log is None:
            data.pop("prediction_log", None)
        return data


# One-hot encoding is dense: each category of each categorical feature becomes a float64
# column for every row, so 200 categories cost 160 MB per 100,000 rows. A column with 100,000
# distinct values (an id, free text) asked for 42 GiB; the limit refuses it with its name.
DEFAULT_CATEGORY_LIMIT = 200


class Features(_Strict):
    numeric: list[str] = Field(default_factory=list)
    categorical: list[str] = Field(default_factory=list)
    category_limit: int = Field(
        DEFAULT_CATEGORY_LIMIT,
        ge=1,
        description="Most one-hot columns one categorical feature may make (its distinct "
        "values in the training table, after `max_categories`/`min_frequency`); a feature "
        "with more is refused, naming the column.",
    )
    max_categories: int | None = Field(
        None,
        ge=2,
        description="Cap: keep at most this many columns per categorical feature, the most "
        "frequent categories plus one for all the rarer ones (scikit-learn's OneHotEncoder "
        "`max_categories`).",
    )
    min_frequency: float | None = Field(
        None,
        gt=0.0,
        description="Cap: group categories seen in fewer training rows than this (a whole "
        "number >= 1), or in a smaller share of them (a fraction below 1), into one column "
        "(OneHotEncoder `min_frequency`).",
    )

    @model_validator(mode="after")
    def _count_or_share(self) -> Features:
        value = self.min_frequency
        if value is not None and value >= 1 and value % 1:
            raise ValueError(
                f"min_frequency {value}: expected a count (a whole number >= 1) or a share "
                "(above 0, below 1)"
            )
        return self

    @property
    def all(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    @property
    def encoder_min_frequency(self) -> int | float | None:
        """As scikit-learn reads it: an int is a count, a float a share of the rows."""
        value = self.min_frequency
        return int(value) if value is not None and value >= 1 else value


class Cleaning(_Strict):
    """The declared missing-value, invalid-value and duplicate policy."""

    drop_duplicates: bool = Field(
        False,
        description="Drop rows equal to an earlier row on every column of the source file "
        "(or on `duplicate_key`). Off by default: different people can share every value.",
    )
    duplicate_key: list[str] | None = Field(
        None,
        description="Columns of the source file that identify a row (default: all of them).",
    )
    max_duplicate_share: Share = Field(
        0.01,
        description="Validation fails when drop_duplicates would drop more than this share of "
        "the rows; raise it when duplicates are expected.",
    )
    missing_target: Literal["drop", "error"] = "drop"
    invalid_values: Literal["set_missing", "drop_row"] = Field(
        "set_missing", description="What happens to values the schema calls invalid."
    )
    impute_numeric: Literal["median", "mean", "zero"] = "median"
    impute_categorical: Literal["constant", "most_frequent"] = "constant"


class Split(_Strict):
    strategy: Literal["stratified", "random", "time"] = "stratified"
    test_share: float = Field(0.2, gt=0.0, lt=1.0)
    seed: int = 42


class SearchRunner(_Strict):
    """Where the search's candidates run: a Prefect task runner, chosen here, no code change.

    The model file is the same whichever runner scores the candidates (the refit is local).
    """

    kind: Literal["threads", "dask"] = Field(
        "threads",
        description="`threads`: Prefect's ThreadPoolTaskRunner in the flow's process; `dask`: "
        "Prefect's DaskTaskRunner on a local Dask cluster of worker processes (the `dask` "
        "extra).",
    )
    max_workers: int = Field(
        2, ge=1, le=256, description="Candidates scored at once (threads or Dask worker processes)."
    )


class Search(_Strict):
    """Hyperparameter search; candidates are scored by the primary metric with K-fold CV."""

    space: dict[str, list[Any]] = Field(description="Parameter name -> candidate values.")
    cv: int = Field(3, ge=2, le=20)
    n_iter: int | None = Field(
        None, ge=1, description="Sample this many candidates at random instead of the full grid."
    )
    runner: SearchRunner = Field(default_factory=SearchRunner)

    @model_validator(mode="after")
    def _non_empty(self) -> Search:
        empty = [name for name, values in self.space.items() if not values]
        if not self.space or empty:
            raise ValueError(f"search space needs at least one value per parameter: {empty}")
        return self


class FineTune(_Strict):
    extra_iterations: int = Field(
        50, ge=1, description="Trees or iterations added when the estimator uses warm_start."
    )


class Balance(_Strict):
    """Sample weights so that rare classes and/or rare sensitive groups weigh as much as
    frequent ones; when on, an unweighted fit is also made so the card can compare fairness."""

    classes: bool = Field(False, description="Weight each class to the same total weight.")
    sensitive_groups: bool = Field(
        False, description="Weight each group of the sensitive columns to the same total weight."
    )

    @property
    def enabled(self) -> bool:
        return self.classes or self.sensitive_groups


class Distillation(_Strict):
    """A smaller student trained on the champion's outputs (`modelcycle models distil`)."""

    student: str | None = Field(
        None,
        description="Import path of the student estimator; default: scikit-learn's "
        "HistGradientBoostingClassifier/Regressor (by task) with `params` below.",
    )
    params: dict[str, Any] | None = Field(
        None,
        description="The student's parameters; default for the default student: "
        "max_iter 50, max_leaf_nodes 15, early_stopping off.",
    )
    neighbours: int = Field(
        2, ge=0, le=20, description="Synthetic perturbed copies of each training row."
    )
    jitter: float = Field(
        0.1, ge=0.0, description="Numeric noise on the copies, in column std units."
    )
    resample_share: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="Share of a copy's categorical cells replaced by a draw from the column's "
        "training distribution.",
    )
    min_fidelity: float = Field(
        0.9,
        ge=0.0,
        le=1.0,
        description="Gate: classification, the smallest share of holdout rows where the "
        "student's label equals the teacher's; regression, the smallest R^2 of the student's "
        "predictions against the teacher's.",
    )
    seed: int = Field(0, description="Seed of the synthetic neighbours.")


class Compile(_Strict):
    """A compiled form of the fitted pipeline, kept only when it gives the same answers."""

    enabled: bool = Field(
        False,
        description="Try compiling the pipeline at training time (needs the `compile` extra).",
    )
    max_proba_difference: float = Field(
        1e-6, gt=0.0, le=1e-3, description="Parity: largest absolute probability difference."
    )


class ModelSpec(_Strict):
    estimator: str = Field(description="Import path of a scikit-learn estimator class.")
    params: dict[str, Any] = Field(default_factory=dict)
    search: Search | None = None
    fine_tune: FineTune = Field(default_factory=FineTune)
    balance: Balance = Field(default_factory=Balance)
    # Left out of the resolved config while at their defaults, so adding them changed no
    # existing config's hash (nor the model file of a run that does not use them).
    distillation: Distillation = Field(
        default_factory=Distillation, exclude_if=lambda value: value == Distillation()
    )
    compile: Compile = Field(default_factory=Compile, exclude_if=lambda value: value == Compile())


class Evaluation(_Strict):
    primary_metric: str
    direction: Literal["maximize", "minimize"] | None = Field(
        None, description="Defaults to the metric's natural direction."
    )
    extra_metrics: list[str] = Field(default_factory=list)
    slices: list[str] = Field(default_factory=list, description="Columns to report metrics by.")
    positive_class: str | int | bool | None = Field(
        None, description="Binary tasks: the positive label (default: the larger of the two)."
    )
    min_slice_rows: int = Field(30, ge=1)
    importance_repeats: int = Field(
        5, ge=1, le=100, description="Shuffles per feature for permutation importance."
    )
    importance_rows: int = Field(
        2000, ge=10, description="Holdout rows (sampled) used for permutation importance."
    )


Confidence = Annotated[float, Field(gt=0.0, lt=1.0)]
Gap = Annotated[float, Field(ge=0.0, le=1.0)]


class NonInferiority(_Strict):
    """The challenger against the champion on the same holdout rows, by paired bootstrap."""

    max_drop: float = Field(
        0.01,
        ge=0.0,
        description="Largest loss of the primary metric accepted (in metric units): the check "
        "passes when the confidence interval of (challenger - champion) lies above -max_drop "
        "(below +max_drop for lower-is-better metrics).",
    )
    require_improvement: bool = Field(
        False, description="Also require the interval to lie entirely on the better side of 0."
    )
    bootstrap: int = Field(1000, ge=10, le=100_000, description="Bootstrap resamples.")
    confidence: Confidence = Field(0.95, description="Two-sided confidence level, in (0, 1).")
    seed: int = Field(0, description="Seed of the resampling, stored with the decision.")


class SliceGate(_Strict):
    floors: dict[str, float] = Field(
        default_factory=dict,
        description="Metric -> floor every slice (evaluation.slices) with at least "
        "evaluation.min_slice_rows rows must meet; smaller slices are reported, not judged.",
    )


class Fairness(_Strict):
    """Limits across the groups of each sensitive column; None reports without judging."""

    max_selection_rate_gap: Gap | None = Field(
        None, description="Classification: largest gap in the rate of positive predictions."
    )
    min_selection_rate_ratio: Gap | None = Field(
        None, description="Classification: smallest ratio of group selection rates (min/max)."
    )
    max_tpr_gap: Gap | None = Field(
        0.2, description="Classification: largest gap in true-positive rate (recall)."
    )
    max_mean_error_gap: float | None = Field(
        None, ge=0.0, description="Regression: largest gap in mean error (prediction - truth)."
    )
    min_group_rows: int = Field(
        30, ge=1, description="Groups with fewer holdout rows are reported, not judged."
    )


class Robustness(_Strict):
    rows: int = Field(2000, ge=10, description="Holdout rows sampled for the robustness checks.")
    noise: float = Field(
        0.05, ge=0.0, description="Gaussian noise added to numeric features, in column std units."
    )
    max_flip_rate: Gap = Field(
        0.05, description="Classification: largest share of predictions the noise may change."
    )
    max_mean_change: float = Field(
        0.1,
        ge=0.0,
        description="Regression: largest mean absolute change of predictions under the noise, "
        "in units of the holdout target's standard deviation.",
    )
    max_counterfactual_flip_rate: Gap = Field(
        0.05,
        description="For sensitive columns used as features, when only that column changes: "
        "classification, the largest share of predictions that change; regression, the largest "
        "mean absolute change of predictions in target standard deviations.",
    )
    seed: int = 0


class DegeneratePredictions(_Strict):
    """A classifier that answers (almost) one class for every row fails on its own, and its
    fairness figures are not judged: gaps between groups of a constant answer mean nothing."""

    max_class_share: Annotated[float, Field(gt=0.0, le=1.0)] = Field(
        0.99,
        description="Classification: the largest share of holdout rows one class may be "
        "predicted for.",
    )


class Budgets(_Strict):
    max_latency_ms_per_1000: float | None = Field(
        None, gt=0.0, description="Prediction time for 1,000 rows (median of 3), in ms."
    )
    max_model_mb: float | None = Field(None, gt=0.0, description="Model file size, in MB.")


CheckKind = Literal[
    "floors",
    "non_inferiority",
    "slices",
    "fairness",
    "robustness",
    "budgets",
    "degenerate_predictions",
    "fidelity",
]


class Approval(_Strict):
    """When a human decides, through Prefect's pause-with-input form."""

    mode: Literal["never", "required", "borderline"] = Field(
        "never",
        description="never: the checks decide; required: every passing candidate waits for a "
        "reviewer; borderline: a candidate that fails only `borderline` checks waits for one.",
    )
    timeout_seconds: int = Field(
        86_400, ge=1, description="No answer within this time rejects the candidate."
    )
    poll_seconds: int = Field(
        5, ge=1, description="How often the paused flow checks whether a reviewer answered."
    )
    borderline: list[CheckKind] = Field(
        default_factory=lambda: ["non_inferiority", "slices", "fairness"],
        description="Check kinds a reviewer may overrule in `borderline` mode.",
    )


class Gate(_Strict):
    floors: dict[str, float] = Field(
        default_factory=dict,
        description="Metric -> floor; for lower-is-better metrics (rmse, log_loss) the value "
        "is a ceiling.",
    )
    non_inferiority: NonInferiority = Field(default_factory=NonInferiority)
    slices: SliceGate = Field(default_factory=SliceGate)
    fairness: Fairness = Field(default_factory=Fairness)
    robustness: Robustness = Field(default_factory=Robustness)
    budgets: Budgets = Field(default_factory=Budgets)
    degenerate_predictions: DegeneratePredictions = Field(default_factory=DegeneratePredictions)
    approval: Approval = Field(default_factory=Approval)
    after_pass: Literal["promote", "shadow"] = Field(
        "promote",
        description="What a training run does with a candidate that passed: `promote` it to "
        "champion, or put it in `shadow` (scored on live traffic beside the champion) for the "
        "`experiment` flow to promote or stop.",
    )
    min_ml_test_score: float | None = Field(
        None,
        ge=0.0,
        le=7.0,
        description="Promote only a version whose ML Test Score (Breck et al. 2017: the "
        "minimum of the four section sums, 0-7), scored from its records as `modelcycle models "
        "score` shows it, reaches this; checked by every promotion (a training run's, the "
        "promotion flow's, the experiment's). Unset: not required.",
    )

    @model_serializer(mode="wrap")
    def _without_unset_test_score(self, handler: Any) -> Any:
        """A gate without a minimum dumps (and hashes) as before the field existed."""
        data = handler(self)
        if isinstance(data, dict) and self.min_ml_test_score is None:
            data.pop("min_ml_test_score", None)
        return data


DriftMethod = Literal["wasserstein", "jensenshannon", "ks", "chisquare", "z", "chi2_contingency"]


class ColumnDriftRule(_Strict):
    """Replace the default drift test or threshold for one column."""

    method: DriftMethod | None = Field(
        None,
        description="wasserstein and ks are for numeric columns; chi2_contingency is the "
        "two-sample chi-square test (not an Evidently default).",
    )
    threshold: float | None = Field(
        None, gt=0.0, description="Distance at or above which (p-value below which) it drifts."
    )
    critical: bool = Field(
        False, description="Drift in this column alone makes the status `drift`."
    )


class QualityThreshold(_Strict):
    """How much worse than on the holdout a realised metric may be before it counts."""

    max_drop: float = Field(
        ge=0.0,
        description="Largest accepted loss against the holdout figure: in metric units, or a "
        "fraction of the holdout figure when `relative`.",
    )
    relative: bool | None = Field(
        None,
        description="Read max_drop as a fraction of the holdout figure; default: true for "
        "error metrics (log_loss, brier, rmse, mae, median_absolute_error), false otherwise.",
    )


class QualityInterval(_Strict):
    """The bootstrap interval of each realised metric (the gate's engine)."""

    resamples: int = Field(1000, ge=10, le=100_000, description="Bootstrap resamples.")
    confidence: Confidence = Field(0.95, description="Two-sided confidence level, in (0, 1).")
    max_rows: int = Field(
        20_000,
        ge=100,
        description="Larger labelled windows are resampled from a random sample of this many "
        "rows and the interval scaled to the window's size (sqrt(sample / rows)).",
    )
    seed: int = Field(0, description="Seed of the resampling.")


class ServiceLimits(_Strict):
    """Service health limits judged on each monitored window of the prediction log, per
    answering version; a breach opens an incident of kind `service`."""

    max_p50_ms: float | None = Field(
        None, gt=0, description="Largest median request latency (ms, as the service logged it)."
    )
    max_p99_ms: float | None = Field(
        None, gt=0, description="Largest 99th-percentile request latency (ms)."
    )
    max_error_rate: Share | None = Field(
        None,
        description="Largest share of predict requests answered 5xx (read from the service's "
        "/metrics; unreachable metrics leave it unjudged).",
    )
    min_requests: int = Field(
        100, ge=1, description="Versions with fewer requests in a window are reported, not judged."
    )
    metrics_url: str | None = Field(
        None,
        description="The service's Prometheus endpoint, e.g. http://127.0.0.1:8000/metrics; "
        "null reads the log alone.",
    )
    rollback_within_hours: float | None = Field(
        None,
        gt=0,
        description="Roll back automatically (the `rollback` flow, audited with the evidence) "
        "when a breach comes within this many hours of the champion's promotion; null never.",
    )


class Monitoring(_Strict):
    """How the monitoring flow turns per-column tests into a status, and what it keeps."""

    drift_share: Share = Field(
        0.5,
        description="Status `drift` when at least this share of the tested feature columns "
        "drift (Evidently's dataset-drift rule and default).",
    )
    warning_share: Share = Field(
        0.2,
        description="Status `warning` when at least this share (and at least one) drift.",
    )
    prediction_drift: Literal["ignore", "warning", "drift"] = Field(
        "warning", description="What a drift of the champion's predicted scores makes the status."
    )
    drift_share_weighted: Share | None = Field(
        0.5,
        description="Status `drift` when the drifted features carry at least this share of the "
        "model's permutation importance (recorded with the reference); null turns it off.",
    )
    max_quality_drop: float = Field(
        0.05,
        ge=0.0,
        description="The quality threshold of every realised metric not listed in `quality`: "
        "its max_drop (relative for error metrics).",
    )
    quality: dict[str, QualityThreshold] = Field(
        default_factory=dict,
        description="Metric -> threshold. A quality incident (status `drift`) opens only when "
        "the whole bootstrap interval of the realised metric is past the threshold or a gate "
        "floor; a point estimate past it inside the interval is reported as within noise.",
    )
    quality_interval: QualityInterval = Field(default_factory=QualityInterval)
    min_label_coverage: Share = Field(
        0.0,
        description="Realised quality is judged only when at least this share of the window's "
        "rows have labels (it is always reported).",
    )
    columns: dict[str, ColumnDriftRule] = Field(
        default_factory=dict, description="Per-column test or threshold overrides."
    )
    chisquare: Literal["evidently", "two_sample"] = Field(
        "evidently",
        description="`two_sample` uses the contingency-table test wherever Evidently's default "
        "would pick its one-sample chi-square (which over-flags small samples).",
    )
    min_rows: int = Field(
        200, ge=1, description="Fewer window rows than this give no verdict (and say so)."
    )
    reference_rows: int = Field(
        100_000, ge=100, description="Training rows kept as the reference (a random sample)."
    )
    html_sample_rows: int = Field(
        20_000, ge=100, description="Rows per side in the Evidently HTML report."
    )
    retrain_mode: TrainingMode = Field(
        TrainingMode.scratch, description="How the drift event asks for the model to be retrained."
    )
    service: ServiceLimits = Field(default_factory=ServiceLimits)
    backfill_windows: int = Field(
        14,
        ge=0,
        description="Earlier log windows whose realised quality is recomputed when labels "
        "arrive after they were first reported.",
    )
    retrain_data: Literal["source", "log", "source_and_log"] = Field(
        "source",
        description="What the drift event asks the retraining to learn from: the config's "
        "source, the labelled prediction log of this model alone, or both (the event's "
        "`retrain_overrides` payload).",
    )

    @model_serializer(mode="wrap")
    def _without_default_retrain_data(self, handler: Any) -> Any:
        """`retrain_data: source` (the default) dumps (and hashes) as before the field existed,
        so the config hashes of versions trained before stay the same."""
        data = handler(self)
        if isinstance(data, dict) and self.retrain_data == "source":
            data.pop("retrain_data", None)
        return data

    def retrain_overrides(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> dict[str, Any]:
        """The `overrides` parameter the drift event hands the retraining deployment.

        A verdict on a range of the log names that range: the retraining learns from the
        labelled traffic that drifted, and a closed range reads the same rows when the
        version is reproduced later (an open one would take whatever arrived since).
        """
        if self.retrain_data == "source":
            return {}
        log: dict[str, Any] = {"only": self.retrain_data == "log"}
        if since is not None:
            log["since"] = since.isoformat()
        if until is not None:
            log["until"] = until.isoformat()
        return {"prediction_log": log}

    @model_validator(mode="after")
    def _retrains_on_new_data(self) -> Monitoring:
        if self.retrain_mode is TrainingMode.distil:
            raise ValueError(
                "retrain_mode: distil learns from the drifted champion on its old rows; choose "
                "scratch or fine_tune"
            )
        return self

    def quality_threshold(self, metric: str) -> tuple[float, bool]:
        """(max_drop, relative) for one metric: its own entry, else `max_quality_drop`.

        Relative by default for error metrics: an absolute 0.05 means nothing on a target in
        thousands (a regression's MAE) and a lot on a log loss of 0.3.
        """
        spec = self.quality.get(metric)
        max_drop = self.max_quality_drop if spec is None else spec.max_drop
        relative = spec.relative if spec is not None and spec.relative is not None else None
        return max_drop, (not higher_is_better(metric)) if relative is None else relative


ExperimentMetric = Literal["accuracy", "brier", "log_loss", "absolute_error", "squared_error"]


class Guardrails(_Strict):
    """Limits on the challenger that stop an experiment at the first look that breaches one,
    whatever the primary metric says."""

    max_latency_p99_ratio: float = Field(
        1.5,
        gt=0.0,
        description="Challenger latency p99 / champion latency p99, from the prediction log.",
    )
    max_error_rate: Share = Field(
        0.01,
        description="Share of challenger answers that failed (the champion answered instead).",
    )
    max_prediction_shift: Share = Field(
        0.2,
        description="Distance between the two versions' predictions: total variation of the "
        "predicted labels (classification) or the Kolmogorov-Smirnov statistic (regression).",
    )
    min_rows: int = Field(
        50, ge=1, description="Challenger rows needed before the guardrails are judged."
    )


class Experiment(_Strict):
    """How the `experiment` flow compares a shadow or canary challenger with the champion on
    logged traffic (see modelcycle.evaluation._sequential for the test)."""

    metric: ExperimentMetric | None = Field(
        None,
        description="Per-row primary metric on rows with feedback; default `accuracy` for "
        "classification, `absolute_error` for regression.",
    )
    alpha: Annotated[float, Field(gt=0.0, lt=0.5)] = Field(
        0.05,
        description="False-positive level, valid however many times the flow looks.",
    )
    effect_sd: float = Field(
        0.1,
        gt=0.0,
        description="Scale of the mixture prior on the effect, in standard deviations of the "
        "per-row metric: where the test is most powerful (never its validity).",
    )
    min_rows: int = Field(
        200, ge=2, description="Rows with feedback per version before any decision."
    )
    max_looks: int = Field(
        60,
        ge=1,
        description="Looks after which an undecided experiment stops and the champion stays.",
    )
    entity_key: str | None = Field(
        None,
        description="Request field hashed to pick canary traffic, so an entity always meets "
        "the same version; else the request id.",
    )
    guardrails: Guardrails = Field(default_factory=Guardrails)

    def resolved_metric(self, task: TaskType) -> ExperimentMetric:
        if self.metric is not None:
            return self.metric
        return "accuracy" if task.is_classification else "absolute_error"


class PipelineConfig(_Strict):
    """One model pipeline: what to learn, from which data, and what counts as good enough."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$", description="Model name.")
    owner: str
    description: str
    intended_use: str
    limitations: list[str] = Field(default_factory=list)
    task: TaskType
    data: DataSource
    target: str
    features: Features
    time_column: str | None = None
    sensitive_columns: list[str] = Field(default_factory=list)
    pii_columns: list[str] = Field(default_factory=list)
    subject_keys: list[str] = Field(
        default_factory=list,
        description="Columns that identify a person (a data subject): the prediction service "
        "accepts and logs them as context (pseudonymised with a keyed hash when "
        "MODELCYCLE_SERVE_PSEUDONYMISE_SUBJECT_KEYS is set), and `modelcycle privacy erase "
        "--where COLUMN=VALUE` erases by them. Never features, never PII columns.",
    )
    columns: dict[str, ColumnSchema] = Field(
        default_factory=dict, description="Expected schema per column."
    )
    cleaning: Cleaning = Field(default_factory=Cleaning)
    split: Split = Field(default_factory=Split)
    model: ModelSpec
    evaluation: Evaluation
    gate: Gate = Field(default_factory=Gate)
    monitoring: Monitoring = Field(default_factory=Monitoring)
    experiment: Experiment = Field(default_factory=Experiment)

    @model_serializer(mode="wrap")
    def _without_empty_subject_keys(self, handler: Any) -> Any:
        """A config that declares no subject keys dumps (and hashes) as it did before the
        field existed, so the config hashes of versions trained before stay the same."""
        data = handler(self)
        if isinstance(data, dict) and not self.subject_keys:
            data.pop("subject_keys", None)
        return data

    @model_validator(mode="after")
    def _consistent(self) -> PipelineConfig:
        problems = [
            *self._column_problems(),
            *self._metric_problems(),
            *self._split_problems(),
            *self._monitoring_problems(),
            *self._experiment_problems(),
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _column_problems(self) -> list[str]:
        problems: list[str] = []
        features = self.features.all
        if not features:
            problems.append("features: at least one numeric or categorical feature is needed")
        duplicated = sorted({c for c in features if features.count(c) > 1})
        if duplicated:
            problems.append(f"features: listed more than once: {duplicated}")
        if self.target in features:
            problems.append(f"target {self.target!r} is also listed as a feature")
        leaked = sorted(set(self.pii_columns) & set(self.used_columns))
        if leaked:
            problems.append(f"pii_columns {leaked} are also used as target/feature/time/slice")
        keys = sorted(set(self.subject_keys) & (set(self.used_columns) | set(self.pii_columns)))
        if keys:
            problems.append(
                f"subject_keys {keys} are also used as target/feature/time/slice or declared PII"
            )
        unknown = sorted(set(self.columns) - set(self.used_columns) - set(self.subject_keys))
        if unknown:
            problems.append(f"columns: schema for columns the pipeline does not use: {unknown}")
        return problems

    def _metric_problems(self) -> list[str]:
        problems: list[str] = []
        for where, metric in self._named_metrics():
            tasks = METRICS.get(metric, ((), True))[0]
            if self.task.value not in tasks:
                valid = sorted(m for m, (ts, _) in METRICS.items() if self.task.value in ts)
                problems.append(f"{where}: {metric!r} is not a {self.task} metric (one of {valid})")
        return problems

    def _experiment_problems(self) -> list[str]:
        metric = self.experiment.metric
        problems = []
        if metric is not None:
            regression = metric in ("absolute_error", "squared_error")
            if regression == self.task.is_classification:
                problems.append(f"experiment.metric: {metric!r} does not apply to {self.task}")
        key = self.experiment.entity_key
        sent = [*self.features.all, *self.sensitive_columns, *self.evaluation.slices]
        if self.time_column:
            sent.append(self.time_column)
        if key is not None and key not in sent:
            problems.append(
                f"experiment.entity_key {key!r} is not a column a request carries (a feature, "
                "sensitive column, slice or the time column; PII is never read)"
            )
        return problems

    def _split_problems(self) -> list[str]:
        problems = []
        if self.split.strategy == "time" and not self.time_column:
            problems.append("split: strategy 'time' needs time_column")
        if self.split.strategy == "stratified" and not self.task.is_classification:
            problems.append(
                "split: strategy 'stratified' needs a classification task (use 'random')"
            )
        if self.data.time_range is not None and not self.time_column:
            problems.append("data.time_range needs time_column")
        problems += self._time_range_problems()
        if self.model.balance.classes and not self.task.is_classification:
            problems.append("model.balance.classes needs a classification task")
        if self.model.balance.sensitive_groups and not self.sensitive_columns:
            problems.append("model.balance.sensitive_groups needs sensitive_columns")
        return problems

    def _time_range_problems(self) -> list[str]:
        """A range whose kind the declared time column cannot hold; the data checks the rest."""
        window, schema = self.data.time_range, self.columns.get(self.time_column or "")
        if window is None or window.kind is None or schema is None:
            return []
        holds = "time" if schema.type is ColumnType.datetime else "number"
        if schema.type in (ColumnType.categorical, ColumnType.boolean):
            return [f"time_column {self.time_column!r}: declared {schema.type}, not a time"]
        if holds != window.kind:
            return [
                f"data.time_range: {window.describe()} is a {_kind_name(window.kind)} range but "
                f"time_column {self.time_column!r} is declared {schema.type}"
            ]
        return []

    def _monitoring_problems(self) -> list[str]:
        problems = []
        unknown = sorted(set(self.monitoring.columns) - set(self.features.all))
        if unknown:
            problems.append(f"monitoring.columns: not features of this model: {unknown}")
        for column, rule in self.monitoring.columns.items():
            if column in self.features.categorical and rule.method in ("wasserstein", "ks"):
                problems.append(
                    f"monitoring.columns.{column}: {rule.method} needs a numeric column"
                )
        if self.monitoring.warning_share > self.monitoring.drift_share:
            problems.append("monitoring: warning_share is greater than drift_share")
        for metric in self.monitoring.quality:
            tasks = METRICS.get(metric, ((), True))[0]
            if self.task.value not in tasks:
                valid = sorted(m for m, (ts, _) in METRICS.items() if self.task.value in ts)
                problems.append(
                    f"monitoring.quality: {metric!r} is not a {self.task} metric (one of {valid})"
                )
            elif metric not in self.metrics:
                problems.append(
                    f"monitoring.quality: {metric!r} is not measured: add it to "
                    "evaluation.extra_metrics"
                )
        return problems

    def _named_metrics(self) -> list[tuple[str, str]]:
        named = [("evaluation.primary_metric", self.evaluation.primary_metric)]
        named += [("evaluation.extra_metrics", m) for m in self.evaluation.extra_metrics]
        named += [("gate.floors", m) for m in self.gate.floors]
        named += [("gate.slices.floors", m) for m in self.gate.slices.floors]
        return named

    @property
    def used_columns(self) -> list[str]:
        """Every column the pipeline reads; anything else in the source is dropped on load."""
        extra = [self.target, *self.sensitive_columns, *self.evaluation.slices]
        if self.time_column:
            extra.append(self.time_column)
        return list(dict.fromkeys([*self.features.all, *extra]))

    @property
    def metrics(self) -> list[str]:
        """Primary metric first, then the extras and any floor metric, without repeats."""
        names = [
            self.evaluation.primary_metric,
            *self.evaluation.extra_metrics,
            *self.gate.floors,
            *self.gate.slices.floors,
        ]
        return list(dict.fromkeys(names))

    @property
    def maximize(self) -> bool:
        if self.evaluation.direction is not None:
            return self.evaluation.direction == "maximize"
        return METRICS[self.evaluation.primary_metric][1]


def _kind_name(kind: str) -> str:
    return "date/datetime" if kind == "time" else "numeric"


def higher_is_better(metric: str) -> bool:
    return METRICS[metric][1]


def _format_error(path: str, error: dict[str, Any]) -> str:
    loc = ".".join(str(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"{path}: unknown key {loc!r}"
    if error["type"] == "missing":
        return f"{path}: missing required key {loc!r}"
    message = error["msg"].removeprefix("Value error, ")
    got = error.get("input")
    shown = "" if isinstance(got, dict | list) or got is None else f" (got {got!r})"
    return f"{path}: {loc}: {message}{shown}"


def parse_config(raw: Any, path: str = "<config>") -> PipelineConfig:
    """Validate a mapping; every problem is reported with the key and the file it came from."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    if EXTENDS in raw:
        # A base is named relative to a file; a bare mapping has no file to resolve it from.
        raise ConfigError(f"{path}: {EXTENDS!r} is resolved by load_config, from a config file")
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        lines = [_format_error(path, err) for err in exc.errors()]
        raise ConfigError("\n".join(lines)) from None


def read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}): save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: YAML syntax error{where}: {problem}") from None


def _merge_over(base: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """A variant's keys over its base's: mappings merge key by key, anything else replaces.

    `null` is a value like any other, so it means what it means in a flat file: where the schema
    allows None it unsets what the base set. Neither input is changed.
    """
    merged = dict(base)
    for key, value in own.items():
        below = merged.get(key)
        both_mappings = isinstance(below, dict) and isinstance(value, dict)
        merged[key] = _merge_over(below, value) if both_mappings else value
    return merged


def _anchor_data_source(raw: dict[str, Any], folder: Path) -> dict[str, Any]:
    """A relative data path is relative to the file that states it, even when a variant of that
    file lives in another folder."""
    data = raw.get("data")
    source = data.get("source") if isinstance(data, dict) else None
    if not isinstance(source, str) or source == DEMO_SOURCE or Path(source).is_absolute():
        return raw
    anchored = str((folder / source).resolve())
    return {**raw, "data": {**data, "source": anchored}}


def _base_path(path: Path, reference: Any) -> Path:
    if not isinstance(reference, str) or not reference.strip():
        raise ConfigError(
            f"{path}: {EXTENDS}: expected the path of a base config, relative to this file "
            f"(got {reference!r})"
        )
    return path.parent / reference


def _resolved_mapping(path: Path, chain: tuple[Path, ...]) -> tuple[dict[str, Any], list[Path]]:
    """The file's keys over its bases' (resolved first), and the bases it was built on.

    `chain` is the files that led here (this one last), to refuse a base that leads back.
    """
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    own = _anchor_data_source(raw, path.parent)
    if EXTENDS not in own:
        return own, []
    own = dict(own)
    base = _base_path(path, own.pop(EXTENDS))
    if base.resolve() in {link.resolve() for link in chain}:
        cycle = " -> ".join(map(str, (*chain, base)))
        raise ConfigError(f"{path}: extends {base}, which leads back to {path}: a cycle ({cycle})")
    if not base.is_file():
        raise ConfigError(f"{path}: extends {base}, which is not found")
    below, bases = _resolved_mapping(base, (*chain, base))
    return _merge_over(below, own), [base, *bases]


def load_config(path: str | Path) -> PipelineConfig:
    """Read, resolve the bases and validate the result, which is what runs, is hashed and is
    recorded (without `extends`); errors name the file and the bases it extends."""
    path = Path(path)
    raw, bases = _resolved_mapping(path, (path,))
    label = f"{path} (extends {', '.join(map(str, bases))})" if bases else str(path)
    return parse_config(raw, label)


def config_json_schema() -> dict[str, Any]:
    return PipelineConfig.model_json_schema()


def _existing_config(path: str) -> str:
    """Checked when a flow's parameters are validated: a wrong path fails before any task runs."""
    if not Path(path).is_file():
        raise ValueError(f"{path}: config file not found (relative to {Path.cwd()})")
    return path


ConfigPath = Annotated[
    str,
    Field(
        pattern=r"\.(ya?ml|YA?ML)$",
        description="A pipeline config YAML file, relative to the project folder.",
    ),
    AfterValidator(_existing_config),
]
"""A flow parameter naming a pipeline config: a YAML path (in the schema) that exists (on run)."""


class TrainingOverrides(_Strict):
    """Per-run changes to a config, typed so the Prefect UI renders them as a form."""

    data_source: str | None = Field(
        None, description="Train on this CSV/Parquet file instead of the config's source."
    )
    time_range: TimeRange | None = Field(None, description="Replace the config's time range.")
    prediction_log: PredictionLogSource | None = Field(
        None,
        description="Replace (or add) the labelled prediction log as a training source; the "
        "drift event sets it from monitoring.retrain_data.",
    )
    seed: int | None = Field(None, description="Replace split.seed (also the estimator's seed).")
    estimator_params: dict[str, Any] | None = Field(None, description="Merged over model.params.")
    skip_search: bool = Field(False, description="Fit the configured parameters only.")
    student: str | None = Field(None, description="Distillation: the student estimator.")
    student_params: dict[str, Any] | None = Field(
        None, description="Distillation: the student's parameters (replace the config's)."
    )


def apply_overrides(
    config: PipelineConfig, overrides: TrainingOverrides | None, path: str = "<overrides>"
) -> PipelineConfig:
    """Merge and validate again, so an override is held to the same schema as the file.

    Nulls are kept: a limit the config leaves null (reported, not judged) must not fall back to
    its default because the run was given an unrelated override.
    """
    if overrides is None:
        return config
    raw = config.model_dump(mode="json")
    if overrides.data_source is not None:
        source = overrides.data_source
        raw["data"]["source"] = source if source == DEMO_SOURCE else str(Path(source).resolve())
    if overrides.time_range is not None:
        raw["data"]["time_range"] = overrides.time_range.model_dump(exclude_none=True)
    if overrides.prediction_log is not None:
        raw["data"]["prediction_log"] = overrides.prediction_log.model_dump(mode="json")
    if overrides.seed is not None:
        raw["split"]["seed"] = overrides.seed
        if "random_state" in raw["model"]["params"]:
            raw["model"]["params"]["random_state"] = overrides.seed
    if overrides.estimator_params:
        raw["model"]["params"] = {**raw["model"]["params"], **overrides.estimator_params}
    if overrides.skip_search:
        raw["model"].pop("search", None)
    distillation = raw["model"].setdefault("distillation", {})
    if overrides.student is not None:
        distillation["student"] = overrides.student
        distillation["params"] = None
    if overrides.student_params is not None:
        distillation["params"] = overrides.student_params
    return parse_config(raw, path)


def load_monitoring_section(path: str | Path, model: str) -> Monitoring:
    """Monitoring thresholds from a file: a whole pipeline config of this model, or a file
    holding only a `monitoring:` section, so thresholds can be tuned without a copied config."""
    path = Path(path)
    raw = read_yaml(path)
    if isinstance(raw, dict) and set(raw) == {"monitoring"}:
        section = raw["monitoring"] if raw["monitoring"] is not None else {}
        try:
            return Monitoring.model_validate(section)
        except ValidationError as exc:
            lines = [
                _format_error(str(path), {**err, "loc": ("monitoring", *err["loc"])})
                for err in exc.errors()
            ]
            raise ConfigError("\n".join(lines)) from None
    if isinstance(raw, dict) and "monitoring" not in raw and "name" not in raw:
        raise ConfigError(
            f"{path}: expected a `monitoring:` section (alone, or in a pipeline config); "
            f"found keys {sorted(map(str, raw))}"
        )
    config = load_config(path)
    if config.name != model:
        raise ConfigError(f"{path}: is the config of {config.name!r}, not of {model!r}")
    return config.monitoring

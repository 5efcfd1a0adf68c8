"""Data preparation as pure functions: load, validate, clean, split, profile.

Nothing here mutates its input; each step returns a new frame. Validation reports every
violation in one error so a person fixes a file once, not once per column.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from modelcycle.config import ColumnSchema, ColumnType, PipelineConfig
from modelcycle.data._demo import ensure_demo_file
from modelcycle.errors import DataError, DataValidationError


def resolve_source(config: PipelineConfig, data_dir: Path) -> Path:
    if config.data.is_demo:
        return ensure_demo_file(data_dir)
    return Path(config.data.source)


def _read(path: Path, fmt: str) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: data file is empty")
    kind = fmt if fmt != "auto" else ("parquet" if path.suffix.lower() == ".parquet" else "csv")
    try:
        repeated = _repeated_names(_column_names(path, kind))
        if repeated:
            raise DataError(
                f"{path}: column name(s) {repeated} appear more than once in the header; "
                "expected each column once (pandas would silently rename the copies)"
            )
        if kind == "parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, low_memory=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: data file is empty") from None
    except (ValueError, OSError, pd.errors.ParserError, csv.Error) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot read as {kind}: {first}") from None


def _column_names(path: Path, kind: str) -> list[str]:
    """The header as written: pandas renames a repeated CSV name to `name.1`, and a Parquet
    file with a repeated name fails deep in pyarrow with a message naming neither."""
    if kind == "parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as file:
        return next(csv.reader(file), [])


def _repeated_names(names: list[str]) -> list[str]:
    return sorted({name for name in names if names.count(name) > 1})


def load_table(config: PipelineConfig, path: Path) -> pd.DataFrame:
    """Read the source, drop PII at once, keep the declared columns, apply the time range."""
    raw = _read(path, config.data.format)
    kept = [c for c in config.used_columns if c in raw.columns and c not in config.pii_columns]
    table = raw[kept]
    del raw  # PII never outlives this function
    return _apply_time_range(table, config)


def _apply_time_range(table: pd.DataFrame, config: PipelineConfig) -> pd.DataFrame:
    window = config.data.time_range
    if window is None or config.time_column not in table.columns:
        return table
    return rows_between(table, config.time_column, window.start, window.end)


def rows_between(
    table: pd.DataFrame, column: str, start: float | None, end: float | None
) -> pd.DataFrame:
    """Rows whose `column` lies in [start, end] (either bound may be open); shared by training's
    `data.time_range` and monitoring's window range, so both cut the same way."""
    time = pd.to_numeric(table[column], errors="coerce")
    keep = pd.Series(True, index=table.index)
    if start is not None:
        keep &= time >= start
    if end is not None:
        keep &= time <= end
    return table.loc[keep].reset_index(drop=True)


# --- validation ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnFindings:
    """Counts behind a column's verdict; reused by cleaning so both agree on what is invalid."""

    missing: int
    wrong_type: int
    out_of_range: int
    not_allowed: int
    examples: list[str] = field(default_factory=list)

    @property
    def invalid(self) -> int:
        return self.wrong_type + self.out_of_range + self.not_allowed


def _schema_for(config: PipelineConfig, column: str) -> ColumnSchema | None:
    if column in config.columns:
        return config.columns[column]
    if column in config.features.numeric:
        return ColumnSchema(type=ColumnType.numeric, max_missing_share=1.0)
    if column in config.features.categorical:
        return ColumnSchema(type=ColumnType.categorical, max_missing_share=1.0)
    return None


def _as_number(values: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(values):
        return values.astype("float64")
    return pd.to_numeric(values, errors="coerce")


def _as_text(values: pd.Series) -> pd.Series:
    """Categories as text; whole-number floats (integer codes read next to blanks) lose '.0'."""
    if pd.api.types.is_float_dtype(values):
        whole = values.dropna()
        if (whole % 1 == 0).all():
            return values.astype("Int64").astype("string")
    return values.astype("string")


def _invalid_masks(values: pd.Series, schema: ColumnSchema) -> dict[str, pd.Series]:
    """Boolean masks over present values: wrong type, out of range, not allowed."""
    present = values.notna()
    none = pd.Series(False, index=values.index)
    if schema.type in (ColumnType.numeric, ColumnType.integer):
        number = _as_number(values)
        wrong = present & number.isna()
        infinite = present & np.isinf(number)
        if schema.type is ColumnType.integer:
            wrong |= present & number.notna() & ~infinite & (number % 1 != 0)
        out = none.copy()
        if schema.min is not None:
            out |= number < schema.min
        if schema.max is not None:
            out |= number > schema.max
        return {"wrong_type": wrong, "out_of_range": out & ~wrong & ~infinite, "not_allowed": none}
    if schema.type is ColumnType.boolean:
        ok = values.isin([True, False, 0, 1, "true", "false", "True", "False"])
        return {"wrong_type": present & ~ok, "out_of_range": none, "not_allowed": none}
    if schema.allowed is not None:
        allowed = present & ~_as_text(values).isin(schema.allowed)
        return {"wrong_type": none, "out_of_range": none, "not_allowed": allowed}
    return {"wrong_type": none, "out_of_range": none, "not_allowed": none}


def _infinite(values: pd.Series, schema: ColumnSchema | None) -> pd.Series:
    """±inf, in a column the schema calls numeric or, without a schema, one read as numbers.

    Never a valid value: scikit-learn refuses it deep inside a fit (naming neither column nor
    file), and a window that carries one must be flagged, not crash the monitoring run.
    """
    numeric = schema is not None and schema.type in (ColumnType.numeric, ColumnType.integer)
    unschematised_number = schema is None and pd.api.types.is_float_dtype(values)
    if not (numeric or unschematised_number):
        return pd.Series(False, index=values.index)
    return pd.Series(np.isinf(_as_number(values).to_numpy(dtype="float64")), index=values.index)


def _bad(values: pd.Series, schema: ColumnSchema | None) -> pd.Series:
    """Values no model may see: infinite, or invalid by the schema."""
    bad = _infinite(values, schema)
    if schema is not None:
        masks = _invalid_masks(values, schema)
        bad |= masks["wrong_type"] | masks["out_of_range"] | masks["not_allowed"]
    return bad


def column_findings(values: pd.Series, schema: ColumnSchema) -> ColumnFindings:
    masks = _invalid_masks(values, schema)
    bad = masks["wrong_type"] | masks["out_of_range"] | masks["not_allowed"]
    examples = [repr(v) for v in values[bad].drop_duplicates().head(3).tolist()]
    return ColumnFindings(
        missing=int(values.isna().sum()),
        wrong_type=int(masks["wrong_type"].sum()),
        out_of_range=int(masks["out_of_range"].sum()),
        not_allowed=int(masks["not_allowed"].sum()),
        examples=examples,
    )


def _describe_invalid(column: str, schema: ColumnSchema, f: ColumnFindings, rows: int) -> str:
    parts = []
    if f.wrong_type:
        parts.append(f"{f.wrong_type} not of type {schema.type}")
    if f.out_of_range:
        parts.append(f"{f.out_of_range} outside [{schema.min}, {schema.max}]")
    if f.not_allowed:
        parts.append(f"{f.not_allowed} not in the allowed categories")
    return (
        f"column {column!r}: {f.invalid} of {rows} values ({f.invalid / rows:.2%}) are invalid "
        f"({', '.join(parts)}; e.g. {', '.join(f.examples)}), more than max_invalid_share "
        f"{schema.max_invalid_share:.2%}"
    )


def _column_violations(column: str, values: pd.Series, config: PipelineConfig) -> list[str]:
    schema = _schema_for(config, column)
    rows = len(values)
    if rows == 0:
        return []
    missing_share = float(values.isna().mean())
    if missing_share == 1.0:
        return [f"column {column!r}: every value is missing"]
    violations = []
    infinite = values[_infinite(values, schema)]
    if len(infinite):
        shown = ", ".join(sorted({str(v) for v in _as_number(infinite)}))
        violations.append(
            f"column {column!r}: {len(infinite)} of {rows} values are infinite ({shown}); "
            "expected finite numbers (leave a value empty if it is missing)"
        )
    if schema is None:
        return violations
    found = column_findings(values, schema)
    if missing_share > schema.max_missing_share:
        violations.append(
            f"column {column!r}: {found.missing} of {rows} values "
            f"({missing_share:.2%}) are missing, more than max_missing_share "
            f"{schema.max_missing_share:.2%}"
        )
    if found.invalid / rows > schema.max_invalid_share:
        violations.append(_describe_invalid(column, schema, found, rows))
    return violations


def _target_violations(table: pd.DataFrame, config: PipelineConfig) -> list[str]:
    if not config.task.is_classification or config.target not in table.columns:
        return []
    classes = table[config.target].dropna().unique()
    if len(classes) < 2:
        shown = [str(c) for c in classes]
        return [
            f"target {config.target!r}: a single class {shown}; classification needs two or more"
        ]
    if config.task.value == "binary_classification" and len(classes) > 2:
        return [f"target {config.target!r}: {len(classes)} classes, binary classification needs 2"]
    positive = config.evaluation.positive_class
    if positive is not None and positive not in set(classes.tolist()):
        return [
            f"evaluation.positive_class {positive!r} is not a value of target {config.target!r}"
        ]
    return []


def validation_violations(table: pd.DataFrame, config: PipelineConfig) -> list[str]:
    """Every schema violation in the batch, in column order."""
    missing = [c for c in config.used_columns if c not in table.columns]
    violations = [f"missing required column {c!r}" for c in missing]
    if table.empty:
        return [*violations, "no rows (after the time range, if one is set)"]
    for column in config.used_columns:
        if column in table.columns:
            violations += _column_violations(column, table[column], config)
    return violations + _cardinality_violations(table, config) + _target_violations(table, config)


def encoded_columns(values: pd.Series, config: PipelineConfig) -> int:
    """How many one-hot columns a categorical feature becomes, as the configured encoder
    counts them: rare categories grouped into one by `min_frequency`, at most
    `max_categories` in all."""
    counts = values.value_counts(dropna=True)  # 1 and 1.0 are one category, as after cleaning
    features = config.features
    columns = len(counts)
    threshold = features.encoder_min_frequency
    if threshold is not None:
        floor = threshold if isinstance(threshold, int) else threshold * len(values)
        frequent = int((counts >= floor).sum())
        columns = frequent + (1 if frequent < len(counts) else 0)
    if features.max_categories is not None:
        columns = min(columns, features.max_categories)
    return columns


def _cardinality_violations(table: pd.DataFrame, config: PipelineConfig) -> list[str]:
    limit = config.features.category_limit
    violations = []
    for column in config.features.categorical:
        if column not in table.columns:
            continue
        columns = encoded_columns(table[column], config)
        if columns > limit:
            distinct = int(table[column].nunique(dropna=True))
            violations.append(
                f"column {column!r}: {distinct} distinct categories would become {columns} "
                f"one-hot columns, more than features.category_limit {limit}; group the rare "
                "ones with features.max_categories or features.min_frequency, raise the "
                "limit, or drop the column if it is an identifier"
            )
    return violations


def validate(table: pd.DataFrame, config: PipelineConfig, source: str) -> None:
    violations = validation_violations(table, config)
    if violations:
        raise DataValidationError(source, violations)


# --- cleaning -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CleaningReport:
    rows_in: int
    rows_out: int
    dropped_missing_target: int
    dropped_invalid: int
    dropped_duplicates: int
    values_set_missing: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _typed(values: pd.Series, schema: ColumnSchema | None) -> pd.Series:
    """Numbers as float64 and categories as object with NaN: what scikit-learn handles best."""
    if schema is not None and schema.type in (ColumnType.numeric, ColumnType.integer):
        return _as_number(values).astype("float64")
    if schema is not None and schema.type is ColumnType.categorical:
        text = _as_text(values)
        return text.astype(object).where(text.notna(), np.nan)
    return values


def clean(table: pd.DataFrame, config: PipelineConfig) -> tuple[pd.DataFrame, CleaningReport]:
    """Apply the declared policy; the target keeps its own type."""
    rows_in = len(table)
    target = table[config.target]
    keep = target.notna()
    if config.cleaning.missing_target == "error" and not keep.all():
        raise DataError(f"target {config.target!r}: {int((~keep).sum())} missing value(s)")
    columns: dict[str, pd.Series] = {}
    invalid_rows = pd.Series(False, index=table.index)
    set_missing: dict[str, int] = {}
    for column in table.columns:
        schema = _schema_for(config, column)
        values = table[column]
        if column != config.target:
            bad = _bad(values, schema)
            if bad.any():
                invalid_rows |= bad
                set_missing[column] = int(bad.sum())
                values = values.where(~bad)
        columns[column] = values if column == config.target else _typed(values, schema)
    cleaned = pd.DataFrame(columns, index=table.index)
    dropped_invalid = 0
    if config.cleaning.invalid_values == "drop_row":
        dropped_invalid = int((invalid_rows & keep).sum())
        keep &= ~invalid_rows
        set_missing = {}
    cleaned = cleaned.loc[keep]
    before_dedup = len(cleaned)
    if config.cleaning.drop_duplicates:
        cleaned = cleaned.drop_duplicates()
    report = CleaningReport(
        rows_in=rows_in,
        rows_out=len(cleaned),
        dropped_missing_target=int((~target.notna()).sum()),
        dropped_invalid=dropped_invalid,
        dropped_duplicates=before_dedup - len(cleaned),
        values_set_missing=set_missing,
    )
    if cleaned.empty:
        raise DataError("no rows left after cleaning (missing targets, invalid values)")
    return cleaned.reset_index(drop=True), report


# --- split --------------------------------------------------------------------------------


def split(table: pd.DataFrame, config: PipelineConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out a test set; a time split keeps every period whole and tests on the latest ones."""
    spec = config.split
    if spec.strategy == "time":
        return _time_split(table, config.time_column or "", spec.test_share)
    stratify = table[config.target] if spec.strategy == "stratified" else None
    try:
        train, test = train_test_split(
            table, test_size=spec.test_share, random_state=spec.seed, stratify=stratify
        )
    except ValueError as exc:
        raise DataError(f"split ({spec.strategy}): {exc}") from None
    return train.reset_index(drop=True), test.reset_index(drop=True)


def _time_split(
    table: pd.DataFrame, column: str, test_share: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    time = table[column]
    counts = time.value_counts().sort_index(ascending=False)
    latest_share = counts.cumsum() / len(table)
    # The smallest set of latest periods that reaches the test share.
    reached = latest_share[latest_share >= test_share]
    cutoff = reached.index[0] if len(reached) else counts.index[-1]
    is_test = time >= cutoff
    if is_test.all() or not is_test.any():
        raise DataError(
            f"split (time): column {column!r} has too few distinct periods to hold out "
            f"{test_share:.0%} of rows and keep some for training"
        )
    train = table.loc[~is_test].sort_values(column, kind="stable")
    test = table.loc[is_test].sort_values(column, kind="stable")
    return train.reset_index(drop=True), test.reset_index(drop=True)


# --- profile ------------------------------------------------------------------------------


def _numeric_profile(values: pd.Series) -> dict[str, Any]:
    present = values.dropna()
    if present.empty:
        return {}
    q = present.quantile([0.05, 0.25, 0.5, 0.75, 0.95]).to_numpy()
    return {
        "mean": float(present.mean()),
        "std": float(present.std(ddof=1)) if len(present) > 1 else 0.0,
        "min": float(present.min()),
        "p05": float(q[0]),
        "p25": float(q[1]),
        "median": float(q[2]),
        "p75": float(q[3]),
        "p95": float(q[4]),
        "max": float(present.max()),
    }


def _categorical_profile(values: pd.Series, top: int = 20) -> dict[str, Any]:
    counts = values.value_counts(dropna=True)
    return {
        "distinct": len(counts),
        "top": {str(k): int(v) for k, v in counts.head(top).items()},
    }


def profile(table: pd.DataFrame) -> dict[str, Any]:
    """Per-column statistics saved with the run; it describes exactly the frame it is given."""
    columns: dict[str, Any] = {}
    for column in table.columns:
        values = table[column]
        entry: dict[str, Any] = {
            "dtype": str(values.dtype),
            "count": int(values.notna().sum()),
            "missing": int(values.isna().sum()),
            "missing_share": float(values.isna().mean()) if len(values) else 0.0,
        }
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            entry.update(_numeric_profile(values))
        else:
            entry.update(_categorical_profile(values))
        columns[column] = entry
    return {"rows": len(table), "columns": columns}


def features_and_target(
    table: pd.DataFrame, config: PipelineConfig
) -> tuple[pd.DataFrame, pd.Series]:
    return table[config.features.all], table[config.target]


# --- used by monitoring on production windows ---------------------------------------------


def read_file(path: Path) -> pd.DataFrame:
    """One CSV or Parquet file, by its suffix; missing, empty or unreadable files say so."""
    return _read(path, "auto")


def column_violations(column: str, values: pd.Series, config: PipelineConfig) -> list[str]:
    """The same per-column checks training applies, for a batch that is judged, not refused."""
    return _column_violations(column, values, config)


def typed_valid(values: pd.Series, config: PipelineConfig, column: str) -> pd.Series:
    """A column typed as training typed it; values the schema calls invalid become missing."""
    schema = _schema_for(config, column)
    bad = _bad(values, schema)
    if bad.any():
        values = values.where(~bad)
    return _typed(values, schema)


MISSING_GROUP = "(missing)"


def group_labels(values: pd.Series) -> np.ndarray:
    """Group names as strings, missing values as one named group, for slices and weights."""
    return values.astype("string").fillna(MISSING_GROUP).to_numpy(dtype=object)

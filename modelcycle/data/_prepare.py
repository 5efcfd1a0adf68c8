"""Data preparation as pure functions: load, validate, clean, split, profile.

Nothing here mutates its input; each step returns a new frame. Validation reports every
violation in one error so a person fixes a file once, not once per column.
"""

from __future__ import annotations

import csv
import warnings
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from modelcycle.config import ColumnSchema, ColumnType, PipelineConfig, TimeRange
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


@dataclass(frozen=True)
class SourceTable:
    """The declared columns of a source file's rows in the period, and which rows repeat.

    Duplicates are found on every column of the file (or the declared key) before anything is
    dropped, so rows that merely share their used columns' values are never called duplicates.
    """

    table: pd.DataFrame
    duplicated: pd.Series | None  # True for a row equal to an earlier one; None when not asked


def load_source(config: PipelineConfig, path: Path) -> SourceTable:
    """Read the source, parse the time column, keep the period, mark duplicates, drop PII and
    every column the pipeline does not use."""
    raw = _read(path, config.data.format)
    column = config.time_column
    if column and column in raw.columns:
        raw = raw.assign(**{column: time_values(raw[column], column, _time_format(config))})
    rows_read = len(raw)
    raw = _apply_time_range(raw, config)
    if raw.empty and rows_read and config.data.time_range is not None:
        raise DataError(_empty_period(path, config, rows_read))
    duplicated = _duplicated(raw, config, path) if config.cleaning.drop_duplicates else None
    kept = [c for c in config.used_columns if c in raw.columns and c not in config.pii_columns]
    table = raw[kept]
    del raw  # PII never outlives this function
    return SourceTable(table=table, duplicated=duplicated)


def load_table(config: PipelineConfig, path: Path) -> pd.DataFrame:
    """The declared columns of the source in the period (PII dropped), duplicates kept."""
    return load_source(config, path).table


def _time_format(config: PipelineConfig) -> str | None:
    schema = config.columns.get(config.time_column or "")
    return schema.time_format if schema is not None else None


def _duplicated(raw: pd.DataFrame, config: PipelineConfig, path: Path) -> pd.Series:
    key = config.cleaning.duplicate_key or list(raw.columns)
    missing = [c for c in key if c not in raw.columns]
    if missing:
        raise DataError(f"{path}: cleaning.duplicate_key names columns not in the file: {missing}")
    return raw.duplicated(subset=key, keep="first")


def _empty_period(path: Path, config: PipelineConfig, rows_read: int) -> str:
    window = config.data.time_range
    assert window is not None and config.time_column is not None
    return (
        f"{path}: none of its {rows_read} rows has {config.time_column} in the time range "
        f"{window.describe()} (data.time_range); set the period for this run with "
        "`train --start/--end` (TrainingOverrides.time_range)"
    )


def _apply_time_range(table: pd.DataFrame, config: PipelineConfig) -> pd.DataFrame:
    window = config.data.time_range
    if window is None or config.time_column not in table.columns:
        return table
    return rows_between(table, config.time_column, window.start, window.end)


def time_values(values: pd.Series, column: str, time_format: str | None = None) -> pd.Series:
    """A time column as timestamps (in UTC when the file gives a zone) or as numbers.

    Text is parsed as ISO 8601 unless `time_format` is declared; a value that does not parse is
    an error naming the column, so a range never silently selects nothing.
    """
    if pd.api.types.is_datetime64_any_dtype(values):
        return _in_utc(values)
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        return values
    present = values.dropna()
    if present.empty:
        return values
    if present.map(lambda v: isinstance(v, date)).all():  # Parquet dates, Python datetimes
        return _in_utc(pd.to_datetime(values, utc=_has_zone(present)))
    parsed = _parse_text(values.astype("string"), time_format)
    bad = values.notna() & parsed.isna()
    if bad.any():
        examples = ", ".join(repr(v) for v in values[bad].drop_duplicates().head(3).tolist())
        expected = f"time_format {time_format!r}" if time_format else "ISO 8601 (2017-10-01)"
        raise DataError(
            f"time column {column!r}: {int(bad.sum())} of {len(values)} values are not "
            f"timestamps in {expected} (e.g. {examples}); declare "
            f"columns.{column}.time_format (a strftime format such as '%d/%m/%Y')"
        )
    return parsed


def _has_zone(present: pd.Series) -> bool:
    return bool(present.map(lambda v: isinstance(v, datetime) and v.tzinfo is not None).any())


def _parse_text(values: pd.Series, time_format: str | None) -> pd.Series:
    """One pass; a second in UTC when the text mixes offsets (pandas cannot hold several)."""
    fmt = time_format or "ISO8601"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the mixed-offset warning; handled below
        try:
            parsed = pd.to_datetime(values, format=fmt, errors="coerce")
        except ValueError:
            parsed = None
    if parsed is None or not pd.api.types.is_datetime64_any_dtype(parsed):
        parsed = pd.to_datetime(values, format=fmt, errors="coerce", utc=True)
    return _in_utc(parsed)


def _in_utc(values: pd.Series) -> pd.Series:
    """Zoned timestamps in UTC; naive ones are left as written (no zone is assumed)."""
    if getattr(values.dt, "tz", None) is not None:
        return values.dt.tz_convert("UTC")
    return values


def time_zone_of(values: pd.Series) -> str | None:
    """`UTC` for zoned timestamps (converted on load), None when the file gives no zone."""
    if pd.api.types.is_datetime64_any_dtype(values):
        tz = values.dt.tz
        return str(tz) if tz is not None else None
    return None


def rows_between(
    table: pd.DataFrame,
    column: str,
    start: date | float | None,
    end: date | float | None,
    time_format: str | None = None,
) -> pd.DataFrame:
    """Rows whose `column` lies in [start, end] (either bound may be open; a date as `end`
    includes that day); shared by training's `data.time_range` and monitoring's window range,
    so both cut the same way. A bound whose kind the column cannot hold is refused."""
    window = TimeRange(start=start, end=end)
    time = time_values(table[column], column, time_format)
    keep = pd.Series(True, index=table.index)
    first, last = _bounds_for(time, column, window)
    if first is not None:
        keep &= time >= first
    if last is not None:
        whole_day = isinstance(window.end, date) and not isinstance(window.end, datetime)
        keep &= (time < last) if whole_day else (time <= last)
    return table.loc[keep.fillna(False).astype(bool)].reset_index(drop=True)


def _bounds_for(time: pd.Series, column: str, window: TimeRange) -> tuple[Any, Any]:
    """The range's limits as values the column compares with, or a refusal naming both."""
    is_time = pd.api.types.is_datetime64_any_dtype(time)
    is_number = not is_time and (
        pd.api.types.is_numeric_dtype(time) or pd.api.types.is_bool_dtype(time)
    )
    example = time.dropna().head(1).tolist()
    shown = f" (e.g. {example[0]})" if example else ""
    if not (is_time or is_number):
        raise DataError(f"time column {column!r} holds neither numbers nor timestamps{shown}")
    holds = "time" if is_time else "number"
    if window.kind is not None and window.kind != holds:
        given = "date/datetime" if window.kind == "time" else "numeric"
        has = "timestamps" if is_time else "numbers"
        hint = " such as 2017-10-01" if is_time else " such as a year"
        raise DataError(
            f"time range {window.describe()} is {given}, but time column {column!r} holds "
            f"{has}{shown}: give bounds of the column's kind{hint}"
        )
    first, last = window.first_instant(), window.last_instant()
    if not is_time:
        return first, last
    return _as_column_time(first, time, column), _as_column_time(last, time, column)


def _as_column_time(bound: Any, time: pd.Series, column: str) -> pd.Timestamp | None:
    """Naive bounds are read in the column's zone; a zoned bound needs a zoned column."""
    if bound is None:
        return None
    stamp, zone = pd.Timestamp(bound), time.dt.tz
    if zone is None and stamp.tzinfo is not None:
        raise DataError(
            f"time range bound {bound} has a time zone but time column {column!r} has none "
            "(its timestamps are compared as written): give the bound without a zone"
        )
    if zone is not None:
        return stamp.tz_localize(zone) if stamp.tzinfo is None else stamp.tz_convert(zone)
    return stamp


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
    if schema.type is ColumnType.datetime:
        return {
            "wrong_type": present & _unparsed(values, schema),
            "out_of_range": none,
            "not_allowed": none,
        }
    if schema.allowed is not None:
        allowed = present & ~_in_allowed(values, schema.allowed)
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


def _unparsed(values: pd.Series, schema: ColumnSchema) -> pd.Series:
    """Values of a datetime column that are not timestamps (text is parsed as on load)."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return pd.Series(False, index=values.index)
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return values.notna()
    as_dates = values.map(lambda v: isinstance(v, date))
    parsed = _parse_text(values.where(~as_dates).astype("string"), schema.time_format)
    return ~as_dates & parsed.isna()


def _in_allowed(values: pd.Series, allowed: list[str | float]) -> pd.Series:
    """Categories compared with the column's type: on a numeric column 1, 1.0 and "1" are one
    value; on a text column "1.0" is "1.0" (and a number in the list is also its text)."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        numbers = pd.to_numeric(pd.Series(allowed, dtype=object), errors="coerce").dropna()
        return values.astype("float64").isin(numbers.astype("float64").tolist())
    texts = {str(a) for a in allowed} | {f"{a:g}" for a in allowed if isinstance(a, float)}
    return _as_text(values).isin(texts)


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


def validation_violations(
    table: pd.DataFrame, config: PipelineConfig, duplicated: pd.Series | None = None
) -> list[str]:
    """Every schema violation in the batch, in column order, then the duplicate share."""
    missing = [c for c in config.used_columns if c not in table.columns]
    violations = [f"missing required column {c!r}" for c in missing]
    if table.empty:
        return [*violations, "no rows (after the time range, if one is set)"]
    for column in config.used_columns:
        if column in table.columns:
            violations += _column_violations(column, table[column], config)
    return (
        violations
        + _cardinality_violations(table, config)
        + _target_violations(table, config)
        + _duplicate_violations(duplicated, config)
    )


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


def _duplicate_violations(duplicated: pd.Series | None, config: PipelineConfig) -> list[str]:
    if duplicated is None or not config.cleaning.drop_duplicates or duplicated.empty:
        return []
    count, rows = int(duplicated.sum()), len(duplicated)
    limit = config.cleaning.max_duplicate_share
    if count / rows <= limit:
        return []
    key = config.cleaning.duplicate_key
    on = f"on duplicate_key {key}" if key else "on every column of the source file"
    return [
        f"cleaning.drop_duplicates: {count} of {rows} rows ({count / rows:.2%}) repeat an "
        f"earlier row {on}, more than cleaning.max_duplicate_share {limit:.2%}; raise it if "
        "these duplicates are expected"
    ]


def validate(
    table: pd.DataFrame, config: PipelineConfig, source: str, duplicated: pd.Series | None = None
) -> None:
    violations = validation_violations(table, config, duplicated)
    if violations:
        raise DataValidationError(source, violations)


# --- cleaning -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CleaningReport:
    """What cleaning did, for the run folder, the card and the run summary; `time` is the time
    column's kind, zone and span, so a reader knows which clock the periods were read on."""

    rows_in: int
    rows_out: int
    dropped_missing_target: int
    dropped_invalid: int
    dropped_duplicates: int
    values_set_missing: dict[str, int]
    duplicates_on: list[str] | None = None  # None: not looked for; []: every column of the file
    time: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _time_facts(table: pd.DataFrame, config: PipelineConfig) -> dict[str, Any] | None:
    column = config.time_column
    if not column or column not in table.columns:
        return None
    values = table[column].dropna()
    is_time = pd.api.types.is_datetime64_any_dtype(values)
    shown = (lambda v: v.isoformat()) if is_time else (lambda v: float(v))
    return {
        "column": column,
        "kind": "timestamps" if is_time else "numbers",
        "time_zone": time_zone_of(values) if is_time else None,
        "first": shown(values.min()) if len(values) else None,
        "last": shown(values.max()) if len(values) else None,
    }


def _typed(values: pd.Series, schema: ColumnSchema | None) -> pd.Series:
    """Numbers as float64 and categories as object with NaN: what scikit-learn handles best.
    Times keep the type `load_source` parsed them to."""
    if schema is not None and schema.type in (ColumnType.numeric, ColumnType.integer):
        return _as_number(values).astype("float64")
    if schema is not None and schema.type is ColumnType.categorical:
        text = _as_text(values)
        return text.astype(object).where(text.notna(), np.nan)
    return values


def clean(
    table: pd.DataFrame, config: PipelineConfig, duplicated: pd.Series | None = None
) -> tuple[pd.DataFrame, CleaningReport]:
    """Apply the declared policy; the target keeps its own type.

    `duplicated` marks rows equal to an earlier one on the whole source file (`load_source`);
    without it, and with `drop_duplicates` on, rows repeat when equal on every column given.
    """
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
    dropped_duplicates = 0
    if config.cleaning.drop_duplicates:
        repeats = table.duplicated() if duplicated is None else duplicated.reindex(table.index)
        repeats = repeats.fillna(False).astype(bool)
        dropped_duplicates = int((repeats & keep).sum())
        keep &= ~repeats
    cleaned = cleaned.loc[keep]
    report = CleaningReport(
        rows_in=rows_in,
        rows_out=len(cleaned),
        dropped_missing_target=int((~target.notna()).sum()),
        dropped_invalid=dropped_invalid,
        dropped_duplicates=dropped_duplicates,
        values_set_missing=set_missing,
        duplicates_on=(config.cleaning.duplicate_key or [])
        if config.cleaning.drop_duplicates
        else None,
        time=_time_facts(cleaned, config),
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
    if schema is not None and schema.type is ColumnType.categorical:
        by_value = _typed_valid_text(values, schema)
        if by_value is not None:
            return by_value
    bad = _bad(values, schema)
    if bad.any():
        values = values.where(~bad)
    return _typed(values, schema)


def _text_codes(values: pd.Series) -> tuple[np.ndarray, list[str]] | None:
    """Each row's index among the distinct values (-1 for missing) when every value is text,
    else None: 1, 1.0 and True would be counted as one value. A category column of a million
    logged rows holds a handful, so per-value work replaces per-row work."""
    if values.dtype != object:
        return None
    codes, distinct = pd.factorize(values, use_na_sentinel=True)
    if not all(isinstance(value, str) for value in distinct):
        return None
    return codes, list(distinct)


def _typed_valid_text(values: pd.Series, schema: ColumnSchema) -> pd.Series | None:
    """`typed_valid` judged once per distinct value (0.15 s a column at a million rows row by
    row, a tenth of it this way); None when the column is not all text."""
    coded = _text_codes(values)
    if coded is None:
        return None
    codes, distinct = coded
    each = pd.Series(distinct, dtype=object)
    bad = _bad(each, schema)
    typed = _typed(each.where(~bad), schema).to_numpy(dtype=object)
    out = np.full(len(values), np.nan, dtype=object)
    present = codes >= 0
    out[present] = typed[codes[present]]
    return pd.Series(out, index=values.index, name=values.name)


MISSING_GROUP = "(missing)"


def group_labels(values: pd.Series) -> np.ndarray:
    """Group names as strings, missing values as one named group, for slices and weights."""
    coded = _text_codes(values)
    if coded is not None:  # text: named once per distinct value
        codes, distinct = coded
        return np.array([*distinct, MISSING_GROUP], dtype=object)[codes]  # -1: missing
    return values.astype("string").fillna(MISSING_GROUP).to_numpy(dtype=object)

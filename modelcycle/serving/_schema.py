"""What a prediction request may contain, derived from the pipeline config recorded with the
version: feature types, required columns, optional context columns, PII, limits.

A request is checked whole and refused whole: every refused row is named with its index and
field, so a client fixes its payload once. Values the model can still handle (missing values,
unseen categories, numbers outside the schema's range) are predicted and flagged instead.
Accepted values are normalised column by column (numbers to float64 with NaN for missing,
categories to text with NaN for missing) so a row's prediction never depends on its
batch-mates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from modelcycle.config import ColumnSchema, ColumnType, PipelineConfig

MAX_LISTED_PROBLEMS = 20
_NUMERIC = (ColumnType.numeric, ColumnType.integer)


class NonFinite(float):
    """A NaN or ±Infinity token found in the JSON body, kept so the row and field can be named."""


class RequestRefused(Exception):
    """The request cannot be answered as sent; carries the HTTP status and every problem."""

    def __init__(
        self, status: int, kind: str, message: str, problems: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.problems = problems or []

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"kind": self.kind, "message": self.message}
        if self.problems:
            error["problems"] = self.problems
        return {"error": error}


@dataclass(frozen=True)
class Feature:
    name: str
    type: ColumnType
    minimum: float | None = None
    maximum: float | None = None
    known: frozenset[str] | None = None  # categories the fitted encoder knows (or `allowed`)


@dataclass
class Batch:
    """Accepted rows of one request, column-oriented, plus what each row should be logged with."""

    features: dict[str, list[Any]]
    context: dict[str, list[Any]]
    flags: list[list[str]]
    size: int
    dropped_pii: list[str] = field(default_factory=list)

    def inputs(self, row: int) -> dict[str, Any]:
        """One row's logged inputs: features and context, NaN as null; PII is never here."""
        values = {name: column[row] for name, column in self.features.items()}
        values.update({name: column[row] for name, column in self.context.items()})
        return {
            k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in values.items()
        }


@dataclass(frozen=True)
class InputSchema:
    """The accepted shape of one row for one model version."""

    features: tuple[Feature, ...]
    context: tuple[Feature, ...]
    pii: frozenset[str]
    pii_policy: Literal["refuse", "drop"]

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def json_schema(self) -> dict[str, Any]:
        """JSON Schema of one row: features required (null allowed), context optional."""
        properties = {f.name: _property(f) for f in (*self.features, *self.context)}
        return {
            "type": "object",
            "properties": properties,
            "required": self.feature_names,
            "additionalProperties": False,
        }

    def frame(self, batches: list[Batch]) -> pd.DataFrame:
        """One DataFrame for a micro-batch, with the dtypes training used, whatever the values."""
        columns: dict[str, np.ndarray] = {}
        for feature in self.features:
            values: list[Any] = []
            for batch in batches:
                values.extend(batch.features[feature.name])
            if feature.type in _NUMERIC:
                columns[feature.name] = np.asarray(values, dtype="float64")
            else:
                array = np.empty(len(values), dtype=object)
                array[:] = values
                columns[feature.name] = array
        return pd.DataFrame(columns, copy=False)

    # -- parsing ---------------------------------------------------------------------------

    def parse(self, payload: Any, max_rows: int) -> Batch:
        """Check a decoded JSON body; refuse it (422, 413) naming every bad row and field."""
        if not isinstance(payload, dict):
            raise RequestRefused(
                422, "validation", f"body: expected a JSON object, got {_json_type(payload)}"
            )
        unknown = sorted(set(payload) - {"rows", "columns"})
        if unknown or len(payload) != 1:
            detail = f"unknown top-level field(s) {unknown}; " if unknown else ""
            raise RequestRefused(
                422,
                "validation",
                f"body: {detail}expected exactly one of 'rows' (a list of objects) or "
                "'columns' (an object of equal-length lists)",
            )
        if "rows" in payload:
            return self._parse_rows(payload["rows"], max_rows)
        return self._parse_columns(payload["columns"], max_rows)

    def _parse_rows(self, rows: Any, max_rows: int) -> Batch:
        if not isinstance(rows, list):
            raise RequestRefused(
                422, "validation", f"rows: expected a list of objects, got {_json_type(rows)}"
            )
        _check_count(len(rows), max_rows, "rows")
        problems: list[dict[str, Any]] = []
        dropped: set[str] = set()
        features: dict[str, list[Any]] = {f.name: [] for f in self.features}
        context: dict[str, list[Any]] = {f.name: [] for f in self.context}
        flags: list[list[str]] = []
        known = {f.name for f in self.features} | {f.name for f in self.context}
        for index, row in enumerate(rows):
            if not isinstance(row, dict):
                problems.append(_problem(index, None, f"expected an object, got {_json_type(row)}"))
                continue
            row_flags: list[str] = []
            extra = [k for k in row if k not in known]
            for name in extra:
                if name in self.pii:
                    if self.pii_policy == "drop":
                        dropped.add(name)
                        row_flags.append(f"pii_dropped:{name}")
                        continue
                    problems.append(_problem(index, name, _PII_MESSAGE))
                else:
                    problems.append(_problem(index, name, "unknown field"))
            for feature in self.features:
                if feature.name not in row:
                    problems.append(
                        _problem(
                            index,
                            feature.name,
                            "missing required field (send null for a missing value)",
                        )
                    )
                    continue
                value, problem = _convert(feature, row[feature.name], row_flags)
                if problem:
                    problems.append(_problem(index, feature.name, problem))
                features[feature.name].append(value)
            for feature in self.context:
                value, problem = _convert(feature, row.get(feature.name), None)
                if problem:
                    problems.append(_problem(index, feature.name, problem))
                context[feature.name].append(value)
            flags.append(row_flags)
        if problems:
            raise _refused(problems)
        return Batch(features, context, flags, len(rows), sorted(dropped))

    def _parse_columns(self, columns: Any, max_rows: int) -> Batch:
        if not isinstance(columns, dict):
            raise RequestRefused(
                422,
                "validation",
                f"columns: expected an object of equal-length lists, got {_json_type(columns)}",
            )
        problems: list[dict[str, Any]] = []
        dropped: list[str] = []
        known = {f.name for f in self.features} | {f.name for f in self.context}
        for name in columns:
            if name in known:
                continue
            if name in self.pii and self.pii_policy == "drop":
                dropped.append(name)
            else:
                message = _PII_MESSAGE if name in self.pii else "unknown field"
                problems.append(_problem(None, name, message))
        for feature in self.features:
            if feature.name not in columns:
                problems.append(
                    _problem(None, feature.name, "missing required column (nulls for missing)")
                )
        lengths = {
            name: len(values) for name, values in columns.items() if isinstance(values, list)
        }
        for name, values in columns.items():
            if name in known and not isinstance(values, list):
                problems.append(_problem(None, name, f"expected a list, got {_json_type(values)}"))
        if problems:
            raise _refused(problems)
        sizes = {lengths[f.name] for f in (*self.features, *self.context) if f.name in lengths}
        if len(sizes) > 1:
            shown = ", ".join(f"{k}: {v}" for k, v in lengths.items() if k in known)
            raise RequestRefused(
                422, "validation", f"columns: lists must have the same length ({shown})"
            )
        size = sizes.pop()
        _check_count(size, max_rows, "columns")
        flags: list[list[str]] = [[f"pii_dropped:{n}" for n in dropped] for _ in range(size)]
        features: dict[str, list[Any]] = {}
        for feature in self.features:
            out = []
            for index, raw in enumerate(columns[feature.name]):
                value, problem = _convert(feature, raw, flags[index])
                if problem:
                    problems.append(_problem(index, feature.name, problem))
                out.append(value)
            features[feature.name] = out
        context: dict[str, list[Any]] = {}
        for feature in self.context:
            raw_values = columns.get(feature.name) or [None] * size
            out = []
            for index, raw in enumerate(raw_values):
                value, problem = _convert(feature, raw, None)
                if problem:
                    problems.append(_problem(index, feature.name, problem))
                out.append(value)
            context[feature.name] = out
        if problems:
            raise _refused(problems)
        return Batch(features, context, flags, size, sorted(dropped))


_PII_MESSAGE = "declared PII in the model's config; PII is never sent to the service"


def build_schema(
    config: PipelineConfig, pipeline: Any, pii_policy: Literal["refuse", "drop"]
) -> InputSchema:
    """The request schema of one version: its config's columns, the categories its encoder
    learned (so `unseen_category` flags what the model has never seen)."""
    learned = learned_categories(pipeline)
    features = tuple(_feature(config, name, learned.get(name)) for name in config.features.all)
    extra = [*config.sensitive_columns, *config.evaluation.slices, *config.subject_keys]
    if config.time_column:
        extra.append(config.time_column)
    used = set(config.features.all) | {config.target} | set(config.pii_columns)
    context = tuple(
        _feature(config, name, None) for name in dict.fromkeys(extra) if name not in used
    )
    return InputSchema(features, context, frozenset(config.pii_columns), pii_policy)


def learned_categories(pipeline: Any) -> dict[str, frozenset[str]]:
    """Column -> categories of every fitted OneHotEncoder reachable through the pipeline."""
    found: dict[str, frozenset[str]] = {}
    for step in _steps(pipeline):
        if not isinstance(step, ColumnTransformer) or not hasattr(step, "transformers_"):
            continue
        for _name, transformer, columns in step.transformers_:
            encoders = [t for t in _steps(transformer) if isinstance(t, OneHotEncoder)]
            if not encoders or not hasattr(encoders[-1], "categories_"):
                continue
            for column, categories in zip(columns, encoders[-1].categories_, strict=False):
                found[str(column)] = frozenset(
                    str(c) for c in categories if not (isinstance(c, float) and math.isnan(c))
                )
    return found


def _steps(obj: Any) -> list[Any]:
    found = [obj]
    if isinstance(obj, Pipeline):
        for _name, step in obj.steps:
            found += _steps(step)
    return found


def _feature(config: PipelineConfig, name: str, learned: frozenset[str] | None) -> Feature:
    schema = config.columns.get(name) or ColumnSchema(
        type=ColumnType.numeric if name in config.features.numeric else ColumnType.categorical,
        max_missing_share=1.0,
    )
    if name in config.features.numeric and schema.type not in _NUMERIC:
        schema = ColumnSchema(type=ColumnType.numeric, max_missing_share=1.0)
    known = learned
    if known is None and schema.allowed is not None:
        known = frozenset(schema.allowed)
    return Feature(name, schema.type, schema.min, schema.max, known)


def _convert(feature: Feature, value: Any, flags: list[str] | None) -> tuple[Any, str | None]:
    """(normalised value, problem). Flags are appended only for model features."""
    if value is None:
        if flags is not None:
            flags.append(f"missing:{feature.name}")
        return math.nan, None
    if feature.type in _NUMERIC:
        if isinstance(value, NonFinite) or (isinstance(value, float) and not math.isfinite(value)):
            return math.nan, (
                f"{_non_finite_name(value)} is not a number; send null for a missing value"
            )
        if isinstance(value, bool) or not isinstance(value, int | float):
            return math.nan, f"expected a number, got {_json_type(value)} {_short(value)}"
        if feature.type is ColumnType.integer and float(value) % 1 != 0:
            return math.nan, f"expected a whole number, got {value!r}"
        number = float(value)
        if flags is not None and (
            (feature.minimum is not None and number < feature.minimum)
            or (feature.maximum is not None and number > feature.maximum)
        ):
            flags.append(f"out_of_range:{feature.name}")
        return number, None
    if feature.type is ColumnType.boolean:
        if not isinstance(value, bool):
            return math.nan, f"expected true or false, got {_json_type(value)} {_short(value)}"
        return value, None
    if isinstance(value, bool) or not isinstance(value, str | int):
        return math.nan, f"expected a string, got {_json_type(value)} {_short(value)}"
    text = str(value)  # integer codes become text, as training read them
    if flags is not None and feature.known is not None and text not in feature.known:
        flags.append(f"unseen_category:{feature.name}")
    return text, None


def _property(feature: Feature) -> dict[str, Any]:
    if feature.type in _NUMERIC:
        prop: dict[str, Any] = {
            "type": ["integer" if feature.type is ColumnType.integer else "number", "null"]
        }
        if feature.minimum is not None:
            prop["description"] = f"expected from {feature.minimum}"
        if feature.maximum is not None:
            prop["description"] = (
                f"expected within [{feature.minimum}, {feature.maximum}]; outside is predicted "
                "and flagged"
            )
        return prop
    if feature.type is ColumnType.boolean:
        return {"type": ["boolean", "null"]}
    prop = {"type": ["string", "null"]}
    if feature.known is not None:
        prop["examples"] = sorted(feature.known)
        prop["description"] = "other values are predicted and flagged as unseen"
    return prop


def _check_count(count: int, max_rows: int, where: str) -> None:
    if count == 0:
        raise RequestRefused(422, "validation", f"{where}: empty; send at least one row")
    if count > max_rows:
        raise RequestRefused(
            413,
            "too_many_rows",
            f"{where}: {count} rows, more than the limit of {max_rows} per request; split it",
        )


def _problem(row: int | None, name: str | None, message: str) -> dict[str, Any]:
    return {"row": row, "field": name, "message": message}


def _refused(problems: list[dict[str, Any]]) -> RequestRefused:
    rows = sorted({p["row"] for p in problems if p["row"] is not None})
    listed = problems[:MAX_LISTED_PROBLEMS]
    parts = [_describe(p) for p in listed]
    more = len(problems) - len(listed)
    summary = "; ".join(parts) + (f"; and {more} more" if more > 0 else "")
    head = f"{len(rows)} row(s) refused: " if rows else "request refused: "
    return RequestRefused(422, "validation", head + summary, listed)


def _describe(problem: dict[str, Any]) -> str:
    where = []
    if problem["row"] is not None:
        where.append(f"row {problem['row']}")
    if problem["field"] is not None:
        where.append(f"field {problem['field']!r}")
    return f"{' '.join(where)}: {problem['message']}"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _non_finite_name(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"

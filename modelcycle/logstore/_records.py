"""The shape of a log record, checked before anything is queued, and its flat table form.

A submit is refused whole, with one line naming the record's index and field, so a bad
record never reaches a segment and a good one is never half-accepted with it.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable
from datetime import UTC, datetime
from typing import Any

from modelcycle.errors import ModelcycleError

from ._segments import check_name

PREDICTION_KEYS = (
    "id",
    "time",
    "model",
    "version",
    "request_id",
    "role",
    "inputs",
    "outputs",
    "latency_ms",
    "flags",
)
FEEDBACK_KEYS = ("id", "label", "time", "model")
INPUT_PREFIX, OUTPUT_PREFIX = "input.", "output."
BASE_COLUMNS = ["id", "time", "model", "version", "request_id", "role", "latency_ms", "flags"]
FEEDBACK_COLUMNS = ["id", "label", "time", "model"]
_SCALAR = (str, int, float, bool, type(None))


class LogRecordError(ModelcycleError, ValueError):
    """A record handed to the log is malformed or carries PII; nothing of its submit is kept."""


def _fail(kind: str, index: int, key: str, expected: str, value: object) -> LogRecordError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return LogRecordError(f"{kind} record {index}: field {key!r}: expected {expected}, got {shown}")


def parse_time(value: object) -> datetime | None:
    """An ISO-8601 time with its offset, as UTC; None when it is not one."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo is not None else None


def _check_keys(kind: str, index: int, record: object, keys: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise LogRecordError(f"{kind} record {index}: expected an object, got {type(record)}")
    missing = [k for k in keys if k not in record]
    extra = sorted(set(record) - set(keys), key=str)
    if missing or extra:
        raise LogRecordError(
            f"{kind} record {index}: missing fields {missing}, unknown fields {extra}; "
            f"expected exactly {list(keys)}"
        )
    for key in ("id", "model"):
        if not isinstance(record[key], str) or not record[key]:
            raise _fail(kind, index, key, "a non-empty string", record[key])
    try:
        check_name("model", record["model"])
    except ValueError as exc:
        raise LogRecordError(f"{kind} record {index}: field 'model': {exc}") from None
    if parse_time(record["time"]) is None:
        raise _fail(kind, index, "time", "an ISO-8601 time with a UTC offset", record["time"])
    return record


def _scalar(value: object) -> bool:
    return isinstance(value, _SCALAR) and not (isinstance(value, float) and math.isinf(value))


def check_predictions(records: Iterable[object], pii: Collection[str] = ()) -> list[dict]:
    """Every record whole and typed, no input named in `pii`; the first problem raises."""
    checked = []
    for index, raw in enumerate(records):
        record = _check_keys("prediction", index, raw, PREDICTION_KEYS)
        version = record["version"]
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise _fail("prediction", index, "version", "an integer >= 1", version)
        for key in ("request_id", "role"):
            if not isinstance(record[key], str) or not record[key]:
                raise _fail("prediction", index, key, "a non-empty string", record[key])
        _check_inputs(index, record["inputs"], pii)
        outputs = record["outputs"]
        if not isinstance(outputs, dict) or not all(isinstance(k, str) for k in outputs):
            raise _fail("prediction", index, "outputs", "an object", outputs)
        latency = record["latency_ms"]
        if not isinstance(latency, int | float) or isinstance(latency, bool) or not latency >= 0:
            raise _fail("prediction", index, "latency_ms", "a number >= 0", latency)
        flags = record["flags"]
        if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
            raise _fail("prediction", index, "flags", "a list of strings", flags)
        checked.append(record)
    return checked


def _check_inputs(index: int, inputs: object, pii: Collection[str]) -> None:
    """Input values are never echoed in a message: one of them could be personal data."""
    if not isinstance(inputs, dict):
        raise LogRecordError(
            f"prediction record {index}: field 'inputs': expected an object, "
            f"got {type(inputs).__name__}"
        )
    if leaked := sorted(set(inputs) & set(pii), key=str):
        raise LogRecordError(
            f"prediction record {index}: field 'inputs' carries PII column(s) {leaked}; "
            "PII is never logged"
        )
    for key, value in inputs.items():
        if not isinstance(key, str) or not _scalar(value):
            raise LogRecordError(
                f"prediction record {index}: field 'inputs.{key}': expected a string, "
                f"finite number, boolean or null, got {type(value).__name__}"
            )


def check_feedback(records: Iterable[object]) -> list[dict]:
    checked = []
    for index, raw in enumerate(records):
        record = _check_keys("feedback", index, raw, FEEDBACK_KEYS)
        label = record["label"]
        if label is None or not _scalar(label) or (isinstance(label, float) and math.isnan(label)):
            raise _fail("feedback", index, "label", "a string, number or boolean", label)
        checked.append(record)
    return checked


def flatten_prediction(record: dict[str, Any]) -> dict[str, Any]:
    """One table row: inputs and outputs become `input.<name>` and `output.<name>[.<key>]`."""
    row = {key: record[key] for key in BASE_COLUMNS}
    for name, value in record["inputs"].items():
        row[INPUT_PREFIX + name] = value
    for name, value in record["outputs"].items():
        if isinstance(value, dict):
            for key, inner in value.items():
                row[f"{OUTPUT_PREFIX}{name}.{key}"] = inner
        else:
            row[OUTPUT_PREFIX + name] = value
    return row


def utc(moment: datetime | None) -> datetime | None:
    """A bound given by a caller; a naive time is taken to be UTC."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)

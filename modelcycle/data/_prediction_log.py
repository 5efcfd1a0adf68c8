"""The prediction log's compacted Parquet read as labelled training rows.

`modelcycle.serving` writes the log; `modelcycle.logstore` (below `data` in the layers) owns its
on-disk format and lists its parts, which this module reads with its own policy for training
(`modelcycle-prediction-log/1`):

    <root>/<model>/predictions/date=YYYY-MM-DD/part-<worker>-<seq>.parquet
    <root>/<model>/feedback/date=YYYY-MM-DD/part-<worker>-<seq>.parquet

Prediction parts hold `id, time, model, version, request_id, role, latency_ms, flags` and one
`input.<name>` column per logged input; feedback parts hold `id, label, time, model`. Only
compacted parts are read: a part never changes once published, so its SHA-256 in a model's
lineage names exactly the bytes it learned from (records still in a segment are not parts
yet; the training task compacts first). Unlike monitoring's reader, which skips a damaged
part and reads the rest, a training run refuses it by name: a model must not silently learn
from less than its lineage would claim.

A source with `parts` (a pin) reads exactly those parts instead of listing the log: a version's
reproduction must see the bytes it learned from, not the log as it is now, which has grown
since (more traffic and feedback in the same open range) or shrunk (erasure rewrites a part
without a person's rows, retention removes old days). Each pinned part is hashed before its
rows are used; a missing or different one is refused by name.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec import AbstractFileSystem

from modelcycle.config import (
    ColumnType,
    PinnedLogPart,
    PipelineConfig,
    PredictionLogSource,
    log_instant,
)
from modelcycle.data._prepare import SourceTable
from modelcycle.errors import DataError
from modelcycle.logstore import (
    FORMAT,
    INPUT_PREFIX,
    Kind,
    LogLocation,
    list_parts,
    locate,
    part_address,
)
from modelcycle.settings import get_settings

LOG_FORMAT = FORMAT


@dataclass(frozen=True)
class LogPart:
    """One compacted Parquet file of the log, as read: its path, day, bytes' hash and rows."""

    kind: str
    path: str
    day: date
    sha256: str
    rows: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "path": self.path,
            "date": self.day.isoformat(),
            "sha256": self.sha256,
            "rows": self.rows,
        }


@dataclass(frozen=True)
class LabelledLog:
    """The labelled rows of one model's log in a time range, and what they were read from."""

    table: pd.DataFrame  # the config's used columns (features, target, context); PII never
    root: str
    model: str
    source: PredictionLogSource
    parts: tuple[LogPart, ...]
    predictions: int  # predictions in the range
    labelled: int  # of them with a label: the rows of `table`
    foreign_feedback: int  # feedback records naming another model, ignored

    def lineage(self) -> dict[str, Any]:
        """What the model's lineage records: the range, the counts and every part's hash."""
        return {
            "format": LOG_FORMAT,
            "root": self.root,
            "model": self.model,
            "since": _iso(self.source.since),
            "until": _iso(self.source.until),
            "only": self.source.only,
            "predictions": self.predictions,
            "labelled_rows": self.labelled,
            "foreign_feedback_ignored": self.foreign_feedback,
            "parts": [part.to_dict() for part in self.parts],
            "parts_sha256": parts_digest(self.parts),
        }


def _iso(bound: datetime | date | None) -> str | None:
    return log_instant(bound).isoformat() if bound is not None else None


def parts_digest(parts: tuple[LogPart, ...] | list[LogPart]) -> str:
    """One hash for a set of parts: their kinds, paths and content hashes, in a fixed order."""
    digest = hashlib.sha256()
    for part in sorted(parts, key=lambda p: (p.kind, p.path)):
        digest.update(f"{part.kind}\0{part.path}\0{part.sha256}\n".encode())
    return digest.hexdigest()


def log_root(source: PredictionLogSource) -> str:
    """Where the log is: the source's root, else where `modelcycle serve` writes by default."""
    return source.root or str(get_settings().home / "predictions")


def read_log_part(
    fs: AbstractFileSystem, path: str, kind: str, day: date
) -> tuple[LogPart, pd.DataFrame]:
    """One part's rows and the hash of the very bytes they were parsed from.

    A part that does not parse, or lacks the columns of its kind, is refused by name.
    """
    try:
        data = fs.cat_file(path)
        table = pq.read_table(io.BytesIO(data))
    except (OSError, pa.ArrowException) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: prediction log part is unreadable ({first})") from None
    required = {"id", "time", "model"} | ({"label"} if kind == "feedback" else set())
    missing = sorted(required - set(table.column_names))
    if missing:
        raise DataError(
            f"{path}: prediction log {kind} part lacks column(s) {missing}; expected the "
            f"{LOG_FORMAT} layout"
        )
    part = LogPart(kind, path, day, hashlib.sha256(data).hexdigest(), table.num_rows)
    return part, table.to_pandas()


def read_labelled_log(config: PipelineConfig, source: PredictionLogSource) -> LabelledLog:
    """The model's predictions with `since <= time < until`, joined by id to their labels.

    The label becomes the config's target; logged inputs become their columns. Feedback naming
    another model is ignored (and counted); of several labels for an id the earliest counts,
    as the log's own reader and the service decide. Refused with one line each: no labelled
    row in the range, an unreadable part (named), a label the target cannot hold.
    """
    root, model = log_root(source), source.model or config.name
    location = locate(root)
    since = log_instant(source.since) if source.since is not None else None
    until = log_instant(source.until) if source.until is not None else None
    where = f"prediction log {root} (model {model!r}, {source.describe()})"

    pinned = _pinned_parts(location, model, source.parts, root)
    parts: list[LogPart] = []
    predictions = _read_kind(location, model, "predictions", since, until, parts, pinned)
    predictions = predictions[predictions["model"] == model]
    if since is not None:
        predictions = predictions[predictions["time"] >= since]
    if until is not None:
        predictions = predictions[predictions["time"] < until]
    predictions = _first_per_id(predictions)
    if predictions.empty:
        raise DataError(f"{where}: no predictions in the range; nothing to train on")

    # Labels arrive after their prediction: any feedback part from the range's first day on.
    feedback = _read_kind(location, model, "feedback", since, None, parts, pinned)
    foreign = int((feedback["model"] != model).sum())
    feedback = _first_per_id(feedback[feedback["model"] == model])
    joined = predictions.merge(feedback[["id", "label"]], on="id", how="inner")
    if joined.empty:
        raise DataError(
            f"{where}: none of its {len(predictions)} predictions has a feedback label; "
            "send the true outcomes to the service's /feedback first"
        )
    table = _training_rows(joined, config, where)
    return LabelledLog(
        table=table,
        root=root,
        model=model,
        source=source,
        parts=tuple(parts),
        predictions=len(predictions),
        labelled=len(table),
        foreign_feedback=foreign,
    )


@dataclass(frozen=True)
class _Pin:
    kind: Kind
    path: str
    day: date
    sha256: str


def _pinned_parts(
    location: LogLocation, model: str, pins: list[PinnedLogPart] | None, root: str
) -> list[_Pin] | None:
    """The pinned parts with their kind and day read from their place in the layout; a path
    outside this model's log at `root` is refused, as nothing would say what it holds."""
    if pins is None:
        return None
    found = []
    for pin in pins:
        address = part_address(location, model, pin.path)
        if address is None:
            raise DataError(
                f"data.prediction_log.parts: {pin.path} is not a part of {model!r}'s log under "
                f"{root}; expected {location.kind_dir(model, 'predictions')}/date=YYYY-MM-DD/"
                "part-*.parquet (or feedback/)"
            )
        found.append(_Pin(address[0], pin.path, address[1], pin.sha256))
    return found


def check_pinned_parts(source: PredictionLogSource) -> dict[str, str]:
    """Pinned part -> why it cannot stand for what was recorded (one line); the parts whose
    bytes still hash as pinned are left out. Compaction never rewrites a published part, so a
    difference is a removal (retention), a rewrite without some rows (erasure), or damage."""
    location = locate(log_root(source))
    problems = {}
    for pin in source.parts or []:
        if not location.fs.exists(pin.path):
            problems[pin.path] = _missing(pin.path)
            continue
        now = hashlib.sha256(location.fs.cat_file(pin.path)).hexdigest()
        if now != pin.sha256:
            problems[pin.path] = _changed(pin.path, now, pin.sha256)
    return problems


def _missing(path: str) -> str:
    return (
        f"{path}: prediction log part is missing (removed since it was recorded: retention "
        "removes day partitions past their keep time); the rows it held cannot be read again"
    )


def _changed(path: str, now: str, recorded: str) -> str:
    return (
        f"{path}: prediction log part has SHA-256 {now[:16]}..., not the recorded "
        f"{recorded[:16]}... (rewritten since: `modelcycle privacy erase` rewrites the parts "
        "that held an erased person's rows)"
    )


def _read_kind(
    location: LogLocation,
    model: str,
    kind: Kind,
    since: datetime | None,
    until: datetime | None,
    parts: list[LogPart],
    pinned: list[_Pin] | None = None,
) -> pd.DataFrame:
    """Every part of one kind whose day can hold times in the range (partitions are UTC days),
    or, with a pin, exactly the pinned parts of that kind, each checked before it is used."""
    frames = []
    for path, day, expected in _parts_to_read(location, model, kind, since, until, pinned):
        if expected is not None and not location.fs.exists(path):
            raise DataError(_missing(path))
        part, frame = read_log_part(location.fs, path, kind, day)
        if expected is not None and part.sha256 != expected:  # hashed from the bytes it parsed
            raise DataError(_changed(path, part.sha256, expected))
        parts.append(part)
        frames.append(frame)
    columns = ["id", "time", "model"] + (["label"] if kind == "feedback" else [])
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns}).assign(
            time=pd.Series(dtype="datetime64[ns, UTC]")
        )
    with warnings.catch_warnings():  # parts where an input was never sent: all-missing
        warnings.simplefilter("ignore", FutureWarning)
        frame = pd.concat(frames, ignore_index=True)
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    return frame


def _parts_to_read(
    location: LogLocation,
    model: str,
    kind: Kind,
    since: datetime | None,
    until: datetime | None,
    pinned: list[_Pin] | None,
) -> list[tuple[str, date, str | None]]:
    """(path, day, the SHA-256 it must have or None) for every part of `kind` to read."""
    if pinned is not None:
        return [(p.path, p.day, p.sha256) for p in pinned if p.kind == kind]
    first = since.date() if since is not None else None
    last = until.date() if until is not None else None
    return [(path, day, None) for path, day in list_parts(location, model, kind, first, last)]


def _first_per_id(frame: pd.DataFrame) -> pd.DataFrame:
    """Each id once, its earliest record: a re-run compaction can leave a record twice."""
    ordered = frame.sort_values(["time", "id"], kind="stable")
    return ordered.drop_duplicates("id", keep="first").reset_index(drop=True)


def _training_rows(joined: pd.DataFrame, config: PipelineConfig, where: str) -> pd.DataFrame:
    """The config's columns from the logged inputs, the label as the target; nothing else."""
    inputs = {c[len(INPUT_PREFIX) :]: c for c in joined.columns if c.startswith(INPUT_PREFIX)}
    wanted = [c for c in config.used_columns if c != config.target and c not in config.pii_columns]
    missing = [c for c in config.features.all if c not in inputs]
    if missing:
        raise DataError(
            f"{where}: feature(s) {missing} were never logged; the log holds {sorted(inputs)}"
        )
    columns: dict[str, pd.Series] = {}
    for name in wanted:
        if name in inputs:
            columns[name] = joined[inputs[name]].reset_index(drop=True)
        elif name == config.time_column:
            columns[name] = _log_time(joined, config, where)
        else:  # context a client did not send (a sensitive or slice column): missing
            columns[name] = pd.Series([None] * len(joined), dtype=object)
    columns[config.target] = _labels(joined["label"].reset_index(drop=True), config, where)
    return pd.DataFrame(columns)


def _log_time(joined: pd.DataFrame, config: PipelineConfig, where: str) -> pd.Series:
    """A time column the requests did not send: the prediction's time when the column holds
    timestamps; a numeric one (a year) cannot be made up."""
    schema = config.columns.get(config.time_column or "")
    if schema is not None and schema.type is ColumnType.datetime:
        return joined["time"].reset_index(drop=True)
    raise DataError(
        f"{where}: time column {config.time_column!r} was not logged; send it with each request "
        "(the service logs a config's time column as context) or declare it a datetime column "
        "so the prediction time stands in"
    )


def _labels(labels: pd.Series, config: PipelineConfig, where: str) -> pd.Series:
    """Labels as the target column holds them; one outside the declared classes is refused."""
    schema = config.columns.get(config.target)
    if config.task.is_classification:
        allowed = _declared_classes(config)
        if allowed is not None:
            text = labels.map(_label_text)
            outside = sorted(set(text) - {_label_text(v) for v in allowed})
            if outside:
                raise DataError(
                    f"{where}: feedback label(s) {outside[:5]} are not classes of target "
                    f"{config.target!r} (expected one of {list(allowed)})"
                )
    if schema is not None and schema.type in (ColumnType.integer, ColumnType.numeric):
        numbers = pd.to_numeric(labels, errors="coerce")
        bad = labels[numbers.isna() & labels.notna()]
        if not bad.empty:
            raise DataError(
                f"{where}: feedback label(s) {sorted(map(str, bad.unique()))[:5]} are not numbers, "
                f"but target {config.target!r} is declared {schema.type}"
            )
        if schema.type is ColumnType.integer and (numbers % 1 != 0).any():
            raise DataError(
                f"{where}: target {config.target!r} is declared integer; labels are not"
            )
        # Labels are never missing (the log refuses a null one). A plain int64, as a file's
        # integer column loads: a float or nullable target would make a fine-tuned model's
        # classes 0.0/1.0, and its answers and feedback keys change with them.
        return numbers.astype("int64" if schema.type is ColumnType.integer else "float64")
    return labels


def _declared_classes(config: PipelineConfig) -> list[Any] | None:
    """The classes the config allows for its target: `allowed`, or an integer min..max range."""
    schema = config.columns.get(config.target)
    if schema is None:
        return None
    if schema.allowed:
        return list(schema.allowed)
    if schema.type is ColumnType.boolean:
        return [False, True]
    low, high = schema.min, schema.max
    if schema.type is ColumnType.integer and low is not None and high is not None:
        return list(range(int(low), int(high) + 1)) if high - low <= 1000 else None
    return None


def _label_text(value: Any) -> str:
    """1, 1.0 and "1" are the same class; True and "True" too."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class TrainingRows:
    """A run's rows before validation: the file source's, the labelled log's, or both."""

    table: pd.DataFrame
    source: str  # for people and the lineage: the file, the log, or both
    duplicated: pd.Series | None  # as SourceTable: which rows repeat an earlier file row
    log: LabelledLog | None


def combine_sources(
    config: PipelineConfig, file_rows: SourceTable | None, file_source: str | None
) -> TrainingRows:
    """The file's rows (when the config reads its source) with the labelled log's appended.

    Log rows are never duplicates of file rows: each is one answered request, and two equal
    requests are two observations.
    """
    log_source = config.data.prediction_log
    log = read_labelled_log(config, log_source) if log_source is not None else None
    if log is None:
        assert file_rows is not None and file_source is not None
        return TrainingRows(file_rows.table, file_source, file_rows.duplicated, None)
    described = f"{log.root} ({log.model}, {log.source.describe()})"
    if file_rows is None:
        duplicated = (
            pd.Series(False, index=log.table.index) if config.cleaning.drop_duplicates else None
        )
        return TrainingRows(log.table, described, duplicated, log)
    table = pd.concat([file_rows.table, log.table], ignore_index=True)
    duplicated = None
    if file_rows.duplicated is not None:
        duplicated = pd.concat(
            [file_rows.duplicated.reset_index(drop=True), pd.Series(False, index=log.table.index)],
            ignore_index=True,
        )
    return TrainingRows(table, f"{file_source} + {described}", duplicated, log)

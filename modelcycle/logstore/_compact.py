"""Compaction of sealed segments into date-partitioned Parquet, and reading the whole log.

Layout, under the log's root (a folder or any fsspec URL) and its local spool:

    <spool>/<model>/segments/<worker>-<seq>.open|.seg               appended by one writer each
    <root>/<model>/predictions/date=YYYY-MM-DD/part-<worker>-<seq>.parquet
    <root>/<model>/feedback/date=YYYY-MM-DD/part-<worker>-<seq>.parquet

Compaction publishes every part of a segment (local: temporary name, fsync, rename, fsync of
the folder; object stores: one whole-object put) and only then deletes the segment. A crash
in between leaves the segment and some of its parts: readers drop the duplicate ids, and the
next compaction finds the parts already there (checked to hold the same ids) and finishes.
Readers list segments before parts, so a compaction running meanwhile can make them see a
record twice (deduplicated) but never miss one.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import io
import logging
import os
import re
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fsspec import AbstractFileSystem
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from modelcycle.settings import get_settings

from ._records import BASE_COLUMNS, FEEDBACK_COLUMNS, flatten_prediction, utc
from ._segments import (
    OPEN_SUFFIX,
    SEALED_SUFFIX,
    CorruptSegmentError,
    SegmentContents,
    check_name,
    fsync_dir,
    list_segments,
    read_segment,
    seal_orphan,
)

logger = logging.getLogger(__name__)

Kind = Literal["predictions", "feedback"]
KINDS: tuple[Kind, ...] = ("predictions", "feedback")
_PART = re.compile(r"part-[A-Za-z0-9._-]+-\d{20}\.parquet")
_DATE_DIR = re.compile(r"date=(\d{4}-\d{2}-\d{2})")
_UUID7 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


@dataclass(frozen=True)
class LogLocation:
    """Where a log lives: Parquet under `base` on `fs`, segments in the local `spool`."""

    fs: AbstractFileSystem
    base: str
    spool: Path

    @property
    def local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

    def kind_dir(self, model: str, kind: Kind) -> str:
        return f"{self.base.rstrip('/')}/{model}/{kind}"


def locate(
    root: str | os.PathLike[str], spool: str | os.PathLike[str] | None = None
) -> LogLocation:
    """Resolve a root (path or fsspec URL). Segments stay on local disk: in the root when it is
    local, else in `spool`, by default `$MODELCYCLE_HOME/predictions`."""
    fs, base = url_to_fs(str(root))
    if spool is not None:
        folder = Path(spool)
    elif isinstance(fs, LocalFileSystem):
        folder = Path(base)
    else:
        folder = get_settings().home / "predictions"
    return LogLocation(fs=fs, base=base, spool=folder.expanduser().resolve())


@dataclass
class CompactionReport:
    """What one compaction did; `refused` names every segment or part it would not touch."""

    segments: list[str] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)
    predictions: int = 0
    feedback: int = 0
    still_open: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def compact(
    root: str | os.PathLike[str], model: str, spool: str | os.PathLike[str] | None = None
) -> CompactionReport:
    """Move every sealed segment (and every `.open` one whose writer is gone) into Parquet.

    Idempotent and safe to run from several processes: one compactor per model at a time.
    """
    check_name("model", model)
    location = locate(root, spool)
    report = CompactionReport()
    folder = location.spool / model
    if not folder.is_dir():
        return report
    with _compaction_lock(folder):
        if location.local:
            _remove_temporaries(location, model)
        for path in list_segments(location.spool, model):
            try:
                sealed = seal_orphan(path) if path.suffix == OPEN_SUFFIX else path
                if sealed is None:
                    if path.exists():
                        report.still_open.append(path.name)
                    continue
                contents = read_segment(sealed)
                parts = _publish_segment(location, model, contents)
            except CorruptSegmentError as exc:
                logger.error("prediction log: refused %s", exc)
                report.refused.append(str(exc))
                continue
            os.unlink(sealed)
            fsync_dir(sealed.parent)
            report.segments.append(sealed.name)
            report.parts += parts
            report.predictions += len(contents.predictions)
            report.feedback += len(contents.feedback)
    return report


def logged_models(
    root: str | os.PathLike[str], spool: str | os.PathLike[str] | None = None
) -> list[str]:
    """Models with a segment folder in this machine's spool: what `compact` can act on here."""
    location = locate(root, spool)
    if not location.spool.is_dir():
        return []
    return sorted(
        p.name for p in location.spool.iterdir() if p.is_dir() and (p / "segments").is_dir()
    )


@contextlib.contextmanager
def _compaction_lock(folder: Path):
    fd = os.open(folder / ".compact.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _remove_temporaries(location: LogLocation, model: str) -> None:
    """Parts a crashed compactor wrote but never renamed (we hold the lock: none is live)."""
    for kind in KINDS:
        for leftover in Path(location.kind_dir(model, kind)).glob("date=*/.part-*.tmp-*"):
            leftover.unlink(missing_ok=True)


def _publish_segment(location: LogLocation, model: str, contents: SegmentContents) -> list[str]:
    stem = contents.path.stem
    written = []
    for kind, rows in (("predictions", contents.predictions), ("feedback", contents.feedback)):
        for day, table in _tables_by_date(kind, rows).items():
            folder = f"{location.kind_dir(model, kind)}/date={day.isoformat()}"
            final = f"{folder}/part-{stem}.parquet"
            if location.fs.exists(final):
                _check_published(location, final, table)
                continue
            publish_parquet(location.fs, final, table)
            written.append(final)
    return written


def _tables_by_date(kind: Kind, rows: list[dict[str, Any]]) -> dict[date, pa.Table]:
    if not rows:
        return {}
    frame = records_frame(kind, rows)
    days = frame["time"].dt.date
    return {day: _to_arrow(part) for day, part in frame.groupby(days, sort=True)}


def _to_arrow(frame: pd.DataFrame) -> pa.Table:
    """Columns whose values mix types (one request sent a number, another text) become text
    rather than blocking compaction forever."""
    frame = frame.sort_values(["time", "id"], kind="stable").reset_index(drop=True)
    try:
        return pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        mixed = {
            name: frame[name].map(lambda v: None if v is None else str(v))
            for name in frame.columns
            if frame[name].dtype == object and name != "flags"
        }
        return pa.Table.from_pandas(frame.assign(**mixed), preserve_index=False)


def publish_parquet(fs: AbstractFileSystem, path: str, table: pa.Table) -> None:
    """A Parquet file appears whole under its name or not at all, replacing any file there:
    on local disk written beside it, flushed, renamed over it (new folders flushed too); an
    object store's single put is whole by itself. Compaction publishes parts this way and
    erasure rewrites them this way."""
    if not isinstance(fs, LocalFileSystem):
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        fs.pipe_file(path, buffer.getvalue())
        return
    final = Path(path)
    directory = final.parent
    directory.mkdir(parents=True, exist_ok=True)
    temporary = directory / f".{final.name}.tmp-{uuid.uuid4().hex}"
    pq.write_table(table, temporary)
    fd = os.open(temporary, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, final)
    for folder in (directory, directory.parent, directory.parent.parent):
        fsync_dir(folder)


def _check_published(location: LogLocation, final: str, table: pa.Table) -> None:
    """A part left by an interrupted compaction must hold exactly this segment's ids."""
    try:
        existing = pq.read_table(final, columns=["id"], filesystem=location.fs)
    except (OSError, pa.ArrowException) as exc:
        raise CorruptSegmentError(f"{final}: existing part is unreadable ({exc})") from None
    if sorted(existing.column("id").to_pylist()) != sorted(table.column("id").to_pylist()):
        raise CorruptSegmentError(
            f"{final}: already exists with other records than its segment; left untouched"
        )


def records_frame(kind: Kind, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Log records as a table: predictions flattened, times as UTC timestamps."""
    if kind == "predictions":
        frame = pd.DataFrame([flatten_prediction(r) for r in rows], columns=None)
        if frame.empty:
            frame = pd.DataFrame(columns=BASE_COLUMNS)
    else:
        frame = pd.DataFrame(rows, columns=FEEDBACK_COLUMNS)
    frame["time"] = pd.to_datetime(frame["time"], utc=True, format="ISO8601")
    return frame


def read_predictions(
    root: str,
    model: str,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    spool: str | os.PathLike[str] | None = None,
) -> pd.DataFrame:
    """Every logged prediction with `since <= time < until`, each id once, oldest first.

    Columns: id, time (UTC), model, version, request_id, role, latency_ms, flags, then
    `input.<name>` and `output.<name>[.<key>]` (e.g. `output.probabilities.<class>`).
    Damaged segments are skipped, logged, and named in `frame.attrs["refused"]`.
    """
    return read_log(root, model, "predictions", since, until, spool)


def read_feedback(
    root: str,
    model: str,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    spool: str | os.PathLike[str] | None = None,
) -> pd.DataFrame:
    """Logged true outcomes (id, label, time, model); the earliest per id, as known_ids says."""
    return read_log(root, model, "feedback", since, until, spool)


def read_log(
    root: str | os.PathLike[str],
    model: str,
    kind: Kind,
    since: datetime | None = None,
    until: datetime | None = None,
    spool: str | os.PathLike[str] | None = None,
) -> pd.DataFrame:
    """Compacted parts plus segments not yet compacted, each id once, ordered by time.

    `since <= time < until` (naive bounds are UTC). Damaged segments or parts are skipped,
    logged as errors and named in `frame.attrs["refused"]`; everything else is returned.
    """
    return log_rows(read_log_table(root, model, kind, since, until, spool), since, until)


def log_rows(
    read: LogTable, since: datetime | None = None, until: datetime | None = None
) -> pd.DataFrame:
    """What `read_log` returns, from a `read_log_table` of the same range."""
    if read.table is not None:
        frame = log_frame(read.table, read.kind)
    else:
        base = BASE_COLUMNS if read.kind == "predictions" else FEEDBACK_COLUMNS
        frames = [t.to_pandas() for t in read.tables]
        frame = _pandas_frame(frames, read.kind, base, utc(since), utc(until))
    frame.attrs["refused"] = read.refused
    return frame


@dataclass(frozen=True)
class LogTable:
    """One range of a log in Arrow, as `read_log` returns it in pandas: `table` holds the
    rows (each id once, ordered by time and id, base columns first), or is None when the
    parts' schemas do not combine or nothing is in range; then `tables` are the parts as
    read."""

    kind: Kind
    table: pa.Table | None
    tables: list[pa.Table]
    refused: list[str]


def read_log_table(
    root: str | os.PathLike[str],
    model: str,
    kind: Kind,
    since: datetime | None = None,
    until: datetime | None = None,
    spool: str | os.PathLike[str] | None = None,
) -> LogTable:
    """`read_log`'s rows before they become Python objects: a caller that joins on ids
    (monitoring joins a million labels) does it on Arrow columns."""
    check_name("model", model)
    location = locate(root, spool)
    start, end = utc(since), utc(until)
    refused: list[str] = []
    tables: list[pa.Table] = []
    # Segments before parts: see the module docstring.
    rows = _segment_rows(location, model, kind, refused)
    if rows:
        tables.append(_to_arrow(records_frame(kind, rows)))
    for part in _parts(location, model, kind, start, end):
        try:
            tables.append(pq.read_table(part, filesystem=location.fs))
        except (OSError, pa.ArrowException) as exc:
            refused.append(f"{part}: unreadable Parquet part ({exc})")
            logger.error("prediction log: refused %s", refused[-1])
    base = BASE_COLUMNS if kind == "predictions" else FEEDBACK_COLUMNS
    table = _arrow_table(tables, kind, base, start, end)
    # The parts are kept only for the pandas way; a million rows is worth not holding twice.
    return LogTable(kind, table, tables if table is None else [], refused)


def _arrow_table(
    tables: list[pa.Table],
    kind: Kind,
    base: list[str],
    start: datetime | None,
    end: datetime | None,
) -> pa.Table | None:
    """`_pandas_frame`'s rows, computed in Arrow: filtering, the (time, id) sort and the
    duplicate check run on columns instead of Python objects (measured on a million logged
    rows: 35 s with pandas on a loaded 2-core machine, most of it factorizing the ids for the
    sort, turning each row's flags array into a list and copying columns). None when the
    parts' schemas do not combine (a column logged with different types): pandas then does it.
    """
    if not tables:
        return None
    stamp = pa.timestamp("ns", tz="UTC")
    try:
        cast = [
            t.set_column(t.schema.get_field_index("time"), "time", t["time"].cast(stamp))
            for t in tables
        ]
        table = pa.concat_tables(cast, promote_options="default")
    except (pa.ArrowException, KeyError, ValueError):
        return None
    inside = _in_range(table["time"], start, end, stamp)
    if inside is not None:
        table = table.filter(inside)
    if table.num_rows == 0 or any(c not in table.column_names for c in base):
        return None
    if not _sorted(table):  # parts are sorted each; one worker's day is already in order
        table = table.take(pc.sort_indices(table, [("time", "ascending"), ("id", "ascending")]))
    # Feedback: the earliest answer for an id wins (see PredictionLog.known_ids). A prediction
    # is logged once; the same record seen twice (in a segment and in the part a compaction
    # made of it before deleting it) has the same time and id, so it sits next to itself.
    if _has_duplicates(table, kind):
        ids = table["id"].to_numpy(zero_copy_only=False)
        table = table.filter(pa.array(~pd.Index(ids).duplicated(keep="first")))
    rest = sorted(c for c in table.column_names if c not in base)
    table = table.select([*base, *rest])
    empty = [c for c in rest if table[c].null_count == table.num_rows]
    for name in empty:  # a column with no value at all holds None, as from segments
        index = table.schema.get_field_index(name)
        table = table.set_column(index, name, pa.nulls(table.num_rows))
    return table


def log_frame(table: pa.Table, kind: Kind, columns: list[str] | None = None) -> pd.DataFrame:
    """A `read_log_table` table as `read_log`'s frame (only `columns`, when given)."""
    if columns is not None:
        table = table.select(columns)
    flags = None
    if kind == "predictions" and "flags" in table.column_names:
        flags = _flag_lists(table["flags"])
        position = table.column_names.index("flags")
        table = table.drop_columns(["flags"])
    frame = table.to_pandas()
    if flags is not None:  # the log holds lists; Parquet would give arrays back
        frame.insert(position, "flags", flags)
    if "time" in frame.columns:
        frame["time"] = frame["time"].astype("datetime64[ns, UTC]")
    return frame


def _in_range(
    times: pa.ChunkedArray, start: datetime | None, end: datetime | None, stamp: pa.DataType
) -> pa.ChunkedArray | None:
    """Which rows lie in [start, end), or None when all do: filtering copies every column
    (0.3 s a bound at a million rows), and a range on day boundaries keeps whole parts."""
    masks = []
    if start is not None:
        masks.append(pc.greater_equal(times, pa.scalar(start, type=stamp)))
    if end is not None:
        masks.append(pc.less(times, pa.scalar(end, type=stamp)))
    if not masks:
        return None
    inside = masks[0] if len(masks) == 1 else pc.and_(masks[0], masks[1])
    return None if pc.all(inside).as_py() else inside


def _has_duplicates(table: pa.Table, kind: Kind) -> bool:
    if kind == "feedback":  # unique() hashes 1M ids in half count_distinct's time
        return len(pc.unique(table["id"])) < table.num_rows
    ids = table["id"]
    if len(ids) < 2:
        return False
    same = pc.equal(ids.slice(1), ids.slice(0, len(ids) - 1))
    return bool(pc.any(same).as_py())


def _sorted(table: pa.Table) -> bool:
    """Ordered by (time, id) already: times never decrease, and equal times (the rows of one
    request) have increasing ids."""
    times = table["time"].cast(pa.int64()).to_numpy()
    if len(times) < 2:
        return True
    steps = np.diff(times)
    if (steps < 0).any():
        return False
    ties = np.flatnonzero(steps == 0)
    if not len(ties):
        return True
    ids = table["id"]
    before = pc.take(ids, pa.array(ties)).to_numpy(zero_copy_only=False)
    after = pc.take(ids, pa.array(ties + 1)).to_numpy(zero_copy_only=False)
    return bool((before < after).all())


@contextlib.contextmanager
def _gc_paused():
    """Pause the cyclic collector while many acyclic objects are made (each thousand new
    objects would start a pass over the young ones, and some over everything alive)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _flag_lists(column: pa.ChunkedArray) -> list[list[str]]:
    """Each row's flags as a list; most rows have none, so only the others are converted."""
    lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False)
    with _gc_paused():  # a million small lists, no cycles: collection passes cost 2 s here
        flags: list[list[str]] = [[] for _ in range(len(lengths))]
    flagged = np.flatnonzero(lengths)
    if len(flagged):
        for position, values in zip(
            flagged.tolist(), pc.take(column, pa.array(flagged)).to_pylist(), strict=True
        ):
            flags[position] = list(values)
    return flags


def _pandas_frame(
    frames: list[pd.DataFrame],
    kind: Kind,
    base: list[str],
    start: datetime | None,
    end: datetime | None,
) -> pd.DataFrame:
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=base)
    frame["time"] = pd.to_datetime(frame["time"], utc=True).astype("datetime64[ns, UTC]")
    if start is not None:
        frame = frame[frame["time"] >= start]
    if end is not None:
        frame = frame[frame["time"] < end]
    # Feedback: the earliest answer for an id wins (see PredictionLog.known_ids).
    frame = frame.sort_values(["time", "id"], kind="stable").drop_duplicates("id", keep="first")
    frame = frame.reset_index(drop=True)
    if kind == "predictions":  # Parquet gives arrays back; the log holds lists
        frame["flags"] = [list(flags) for flags in frame["flags"]]
    return _canonical(frame, base)


def _canonical(frame: pd.DataFrame, base: list[str]) -> pd.DataFrame:
    """The same rows give the same frame whether read from segments, Parquet or both: fixed
    column order, and a column with no value at all holds None (not NaN or a null type)."""
    rest = sorted(c for c in frame.columns if c not in base)
    frame = frame[[*base, *rest]]
    empty = {c: pd.Series([None] * len(frame), dtype=object) for c in rest if frame[c].isna().all()}
    return frame.assign(**empty)


def _segment_rows(
    location: LogLocation, model: str, kind: Kind, refused: list[str]
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for path in list_segments(location.spool, model):
        contents = _read_moving(path, refused)
        if contents is not None:
            rows += contents.predictions if kind == "predictions" else contents.feedback
    return rows


def _read_moving(path: Path, refused: list[str]) -> SegmentContents | None:
    """Read a segment that may be sealed (renamed) or compacted (deleted) while we look."""
    for candidate in (path, path.with_suffix(SEALED_SUFFIX)):
        try:
            return read_segment(candidate)
        except FileNotFoundError:
            continue
        except CorruptSegmentError as exc:
            refused.append(str(exc))
            logger.error("prediction log: refused %s", exc)
            return None
    return None  # compacted meanwhile: its parts are listed after this


def _parts(
    location: LogLocation,
    model: str,
    kind: Kind,
    start: datetime | None,
    end: datetime | None,
    days: set[date] | None = None,
) -> list[str]:
    first = start.date() if start is not None else None
    last = end.date() if end is not None else None
    listed = list_parts(location, model, kind, first, last)
    return [part for part, day in listed if days is None or day in days]


def list_parts(
    location: LogLocation,
    model: str,
    kind: Kind,
    first_day: date | None = None,
    last_day: date | None = None,
) -> list[tuple[str, date]]:
    """Every published part of one kind with `first_day <= day <= last_day`, oldest first,
    with its partition's day. Names outside the layout (a compactor's temporaries) are not
    parts. Monitoring's reader and training's (`modelcycle.data`) both list parts here."""
    folder = location.kind_dir(model, kind)
    if not location.fs.isdir(folder):
        return []
    found = []
    for entry in sorted(location.fs.ls(folder, detail=False)):
        match = _DATE_DIR.fullmatch(entry.rstrip("/").rsplit("/", 1)[-1])
        if match is None:
            continue
        day = date.fromisoformat(match[1])
        if (first_day is not None and day < first_day) or (last_day is not None and day > last_day):
            continue
        names = sorted(location.fs.ls(entry, detail=False))
        found += [(n, day) for n in names if _PART.fullmatch(n.rsplit("/", 1)[-1])]
    return found


def part_address(location: LogLocation, model: str, path: str) -> tuple[Kind, date] | None:
    """The kind and day of a part named by its path, or None when the path is not a part of
    this model's log at this location (another root, another model, not a part's name)."""
    for kind in KINDS:
        prefix = location.kind_dir(model, kind) + "/"
        if not path.startswith(prefix):
            continue
        folder, _, name = path[len(prefix) :].partition("/")
        match = _DATE_DIR.fullmatch(folder)
        if match is None or not _PART.fullmatch(name):
            return None
        try:
            return kind, date.fromisoformat(match[1])
        except ValueError:
            return None
    return None


def id_days(ids: Iterable[str]) -> set[date] | None:
    """Partitions that can hold these ids when they are UUIDv7 (time-ordered), else None."""
    days: set[date] = set()
    for identifier in ids:
        if not _UUID7.fullmatch(identifier):
            return None
        millis = int(identifier.replace("-", "")[:12], 16)
        day = datetime.fromtimestamp(millis / 1000, UTC).date()
        days |= {day - timedelta(days=1), day, day + timedelta(days=1)}
    return days


class PartCache:
    """The id columns of compacted parts, kept in memory (least recently used first out).

    A part never changes once published, so a cached copy cannot go stale; one that was
    deleted is no longer listed, so its copy is never consulted.
    """

    def __init__(self, max_rows: int = 2_000_000) -> None:
        self._max_rows = max_rows
        self._parts: OrderedDict[tuple[str, Kind], dict[str, dict[str, Any]]] = OrderedDict()
        self._rows = 0
        self._lock = threading.Lock()

    def rows(self, location: LogLocation, part: str, kind: Kind) -> dict[str, dict[str, Any]]:
        key = (part, kind)
        with self._lock:
            if key in self._parts:
                self._parts.move_to_end(key)
                return self._parts[key]
        columns = ["id", "version", "time"] if kind == "predictions" else ["id", "label", "time"]
        table = pq.read_table(part, columns=columns, filesystem=location.fs)
        by_id: dict[str, dict[str, Any]] = {}
        for row in table.to_pylist():
            earlier = by_id.get(row["id"])
            if earlier is None or row["time"] < earlier["time"]:
                by_id[row["id"]] = row
        with self._lock:
            self._parts[key] = by_id
            self._rows += len(by_id)
            while self._rows > self._max_rows and len(self._parts) > 1:
                _, evicted = self._parts.popitem(last=False)
                self._rows -= len(evicted)
        return by_id


def lookup_compacted(
    location: LogLocation,
    model: str,
    kind: Kind,
    ids: list[str],
    days: set[date] | None,
    cache: PartCache,
) -> dict[str, dict[str, Any]]:
    """Rows of compacted parts with these ids (only the columns known_ids needs)."""
    found: dict[str, dict[str, Any]] = {}
    for part in _parts(location, model, kind, None, None, days):
        try:
            rows = cache.rows(location, part, kind)
        except (OSError, pa.ArrowException) as exc:
            logger.error("prediction log: refused %s: unreadable Parquet part (%s)", part, exc)
            continue
        for identifier in ids:
            row = rows.get(identifier)
            earlier = found.get(identifier)
            if row is not None and (earlier is None or row["time"] < earlier["time"]):
                found[identifier] = row
    return found

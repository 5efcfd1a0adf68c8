"""The prediction log of one worker process: a background writer with group commit.

Callers (request handlers, any thread) submit lists of records; each submit is checked and
encoded into one frame per model in the caller's thread, so a bad record is refused before it
is queued and later changes to the caller's dicts cannot reach the log. One writer thread
drains the queue in micro-batches (everything queued within `max_batch_wait_ms` of the oldest
record, and everything that arrived during the previous fsync), appends each model's frames to
that model's open segment with one write, and fsyncs each touched segment once. In `strict`
mode a submit's future resolves only after that fsync; in `relaxed` mode it resolves at once
and `at_risk()` says how many acknowledged records a crash could still lose.

The queue is bounded: a submit that would exceed `max_pending` records raises `LogOverloaded`
and queues nothing. A write or fsync that fails puts the log in a failed state (after a failed
fsync the file's contents are unknown, so retrying on it would be a guess): every pending
future and every later submit gets `LogWriteError`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import defaultdict, deque
from collections.abc import Collection
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import orjson

from modelcycle.errors import ModelcycleError
from modelcycle.logstore import (
    KIND_FEEDBACK,
    KIND_PREDICTIONS,
    SEALED_SUFFIX,
    STEM,
    LogRecordError,
    PartCache,
    SegmentFile,
    check_feedback,
    check_name,
    check_predictions,
    encode_frame,
    id_days,
    iter_frames,
    list_segments,
    locate,
    lookup_compacted,
    parse_time,
    try_lock,
)

logger = logging.getLogger(__name__)

Durability = Literal["strict", "relaxed"]


class LogOverloaded(ModelcycleError):
    """The writer is behind by `max_pending` records: answer 503; nothing of this submit is kept."""


class LogClosedError(ModelcycleError):
    """The log was closed; nothing more can be submitted."""


class LogWriteError(ModelcycleError):
    """A segment could not be written or fsynced; the log accepts nothing more."""


@dataclass
class _Submit:
    frames: dict[str, tuple[bytes, int]]  # model -> (one encoded frame, record count)
    records: int
    future: Future[None]
    queued_at: float


class PredictionLog:
    """One worker's writer; several processes (and machines) each run their own.

    `root` is a folder or fsspec URL (Parquet after compaction); segments stay on local disk
    in the root, or in `spool` (default `$MODELCYCLE_HOME/predictions`) when the root is
    remote. `pii` names input keys that must never be logged: a record carrying one is
    refused. Submits made before `start()` are queued and written once it runs.
    """

    def __init__(
        self,
        root: str,
        worker_id: str,
        durability: Durability = "strict",
        max_pending: int = 50_000,
        max_batch_wait_ms: float = 2.0,
        *,
        pii: Collection[str] = (),
        spool: str | os.PathLike[str] | None = None,
        segment_max_bytes: int = 64 << 20,
        segment_max_seconds: float = 600.0,
        max_batch_records: int = 10_000,
    ) -> None:
        if durability not in ("strict", "relaxed"):
            raise ValueError(f"durability {durability!r}: expected 'strict' or 'relaxed'")
        if max_pending < 1 or max_batch_records < 1:
            raise ValueError("max_pending and max_batch_records must be >= 1")
        if max_batch_wait_ms < 0 or segment_max_seconds <= 0 or segment_max_bytes < 1:
            raise ValueError("batch wait must be >= 0, segment limits > 0")
        self.worker_id = check_name("worker id", worker_id)
        self.durability: Durability = durability
        self._location = locate(root, spool)
        self._max_pending = max_pending
        self._wait = max_batch_wait_ms / 1000
        self._max_batch = max_batch_records
        self._segment_max_bytes = segment_max_bytes
        self._segment_max_seconds = segment_max_seconds
        self._pii = frozenset(pii)
        self._cond = threading.Condition()
        self._queue: deque[_Submit] = deque()
        self._queued = 0  # records in the queue
        self._pending = 0  # records queued or being written, not yet durable
        self._closing = False
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._lock_fd: int | None = None
        self._segments: dict[str, tuple[SegmentFile, float]] = {}  # writer thread only
        self._last_seq = 0
        self._expected = 1  # submits in the last group: how many callers are active
        self._indexes: dict[str, _Index] = {}
        self._indexes_lock = threading.Lock()
        self._parts = PartCache()

    # -- the caller's side ------------------------------------------------------------------

    def start(self) -> None:
        """Take this worker id's lock and start the writer thread."""
        if self._thread is not None:
            return
        workers = self._location.spool / ".workers"
        workers.mkdir(parents=True, exist_ok=True)
        fd = os.open(workers / f"{self.worker_id}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        if not try_lock(fd):
            os.close(fd)
            raise ModelcycleError(
                f"prediction log: worker id {self.worker_id!r} is in use by another live "
                f"writer under {self._location.spool}; each worker needs its own id"
            )
        self._lock_fd = fd
        self._thread = threading.Thread(
            target=self._run, name=f"prediction-log-{self.worker_id}", daemon=True
        )
        self._thread.start()

    def submit_predictions(self, records: list[dict[str, Any]]) -> Future[None]:
        """Queue answered rows; see the class for what the future means in each mode."""
        return self._submit(KIND_PREDICTIONS, check_predictions(records, self._pii))

    def submit_feedback(self, records: list[dict[str, Any]]) -> Future[None]:
        """Queue true outcomes (`id`, `label`, `time`, `model`); the earliest per id counts."""
        return self._submit(KIND_FEEDBACK, check_feedback(records))

    def _submit(self, kind: bytes, records: list[dict[str, Any]]) -> Future[None]:
        future: Future[None] = Future()
        if not records:
            future.set_result(None)
            return future
        by_model: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for record in records:
            by_model[record["model"]].append(record)
        try:
            frames = {m: (encode_frame(kind, rows), len(rows)) for m, rows in by_model.items()}
        except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
            raise LogRecordError(f"log records cannot be encoded as JSON: {exc}") from None
        item = _Submit(frames, len(records), future, time.monotonic())
        with self._cond:
            if self._error is not None:
                raise LogWriteError(f"prediction log failed earlier: {self._error}")
            if self._closing:
                raise LogClosedError("prediction log is closed")
            if self._pending + item.records > self._max_pending:
                raise LogOverloaded(
                    f"prediction log: {self._pending} records waiting to be written, "
                    f"{item.records} more would pass the limit of {self._max_pending}"
                )
            if self.durability == "relaxed":  # before the writer can see it
                future.set_result(None)
            self._queue.append(item)
            self._queued += item.records
            self._pending += item.records
            self._cond.notify()
        return future

    def pending(self) -> int:
        """Records accepted but not yet durable (the queue depth, for /metrics)."""
        with self._cond:
            return self._pending

    def at_risk(self) -> int:
        """Acknowledged records a crash would lose now: the queue in relaxed mode, else 0."""
        return self.pending() if self.durability == "relaxed" else 0

    def close(self, timeout: float | None = None) -> None:
        """Write everything queued, seal the open segments, stop the writer."""
        with self._cond:
            has_work = bool(self._queue)
        if self._thread is None and has_work and self._error is None:
            self.start()
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._lock_fd is not None and (self._thread is None or not self._thread.is_alive()):
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> PredictionLog:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- feedback check -------------------------------------------------------------------

    def known_ids(self, model: str, ids: list[str]) -> dict[str, dict[str, Any]]:
        """`id -> {"version", "feedback"}` for the ids that were predicted, in any worker's
        segment on this machine or in compacted Parquet (any machine). `feedback` is the
        earliest label logged for the id, or None.

        Segments are indexed in memory and tailed incrementally (only bytes written since the
        last call are read; the first call of a process reads every segment of the model, so
        a service warms it with `known_ids(model, [])` at start). Parquet is consulted only
        for ids not in a segment, only in the partitions a UUIDv7 id's timestamp points at
        (every partition for other ids), and each part's ids are cached (parts never change).
        """
        check_name("model", model)
        index = self._index(model)
        found = index.lookup(ids)
        missing = [i for i in dict.fromkeys(ids) if i not in found]
        if missing:
            days = id_days(missing)
            rows = lookup_compacted(
                self._location, model, "predictions", missing, days, self._parts
            )
            for identifier, row in rows.items():
                found[identifier] = {
                    "version": row["version"],
                    "feedback": index.feedback_label(identifier),
                    "_time": row["time"],
                }
        unanswered = [i for i, v in found.items() if v["feedback"] is None]
        if unanswered:
            earliest = min(v["_time"] for i, v in found.items() if i in unanswered)
            days = _days_since(earliest.date() - timedelta(days=1))
            labels = lookup_compacted(
                self._location, model, "feedback", unanswered, days, self._parts
            )
            for identifier, row in labels.items():
                found[identifier]["feedback"] = row["label"]
        return {i: {"version": v["version"], "feedback": v["feedback"]} for i, v in found.items()}

    def _index(self, model: str) -> _Index:
        with self._indexes_lock:
            if model not in self._indexes:
                self._indexes[model] = _Index(self._location.spool, model)
            return self._indexes[model]

    # -- the writer thread ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            while (group := self._next_group()) is not None:
                if group:
                    self._write_group(group)
                self._rotate_due()
        finally:
            self._seal_all()

    def _next_group(self) -> list[_Submit] | None:
        """The next micro-batch; [] after an idle second (to rotate old segments); None to stop.

        Adaptive: it waits (at most `max_batch_wait_ms` after the oldest submit) only until as
        many submits are queued as the previous group had. A lone caller is written at once
        instead of paying the wait on every call (measured: the fixed 2 ms wait made strict
        mode slower than one fsync per record at 1 and 8 submitters), and under load the
        group grows to the number of callers, whose submits arrive during the previous fsync.
        """
        with self._cond:
            if not self._queue and not self._closing:
                self._cond.wait(1.0)
            if not self._queue:
                return None if self._closing else []
            deadline = self._queue[0].queued_at + self._wait
            while (
                not self._closing
                and self._queued < self._max_batch
                and len(self._queue) < self._expected
            ):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            group, records = [], 0
            while self._queue and (
                not group or records + self._queue[0].records <= self._max_batch
            ):
                item = self._queue.popleft()
                group.append(item)
                records += item.records
            self._queued -= records
            self._expected = len(group)
            return group

    def _write_group(self, group: list[_Submit]) -> None:
        if self._error is not None:
            self._fail(group, self._error)
            return
        by_model: dict[str, list[tuple[bytes, int]]] = defaultdict(list)
        for item in group:
            for model, frame in item.frames.items():
                by_model[model].append(frame)
        touched: list[tuple[SegmentFile, int]] = []
        try:
            for model, frames in by_model.items():
                segment = self._segment(model)
                touched.append((segment, segment.size))
                segment.append(
                    b"".join(f for f, _ in frames), len(frames), sum(n for _, n in frames)
                )
            for segment, _ in touched:
                segment.sync()
        except Exception as exc:  # disk full, I/O error: fail loudly, never drop silently
            logger.error("prediction log %s: write failed: %s", self.worker_id, exc)
            for segment, size in touched:  # best effort: refused records should not linger
                segment.truncate(size)
            for segment, _ in self._segments.values():
                segment.abandon()
            self._segments.clear()
            with self._cond:
                self._error = exc
                stranded = list(self._queue)
                self._queue.clear()
                self._queued = 0
            self._fail(group + stranded, exc)
            return
        with self._cond:
            self._pending -= sum(item.records for item in group)
        for item in group:
            if not item.future.done():
                item.future.set_result(None)

    def _fail(self, group: list[_Submit], exc: BaseException) -> None:
        error = LogWriteError(f"prediction log {self.worker_id}: {exc}")
        with self._cond:
            self._pending -= sum(item.records for item in group)
        for item in group:
            if not item.future.done():
                item.future.set_exception(error)

    def _segment(self, model: str) -> SegmentFile:
        if model in self._segments:
            return self._segments[model][0]
        created = datetime.now(UTC)
        segment = SegmentFile(
            self._location.spool, model, self.worker_id, self._next_seq(model), created.isoformat()
        )
        self._segments[model] = (segment, time.monotonic())
        return segment

    def _next_seq(self, model: str) -> int:
        """Microseconds since the epoch, above any seq this worker id used before here."""
        used = [
            int(match["seq"])
            for p in list_segments(self._location.spool, model)
            if (match := STEM.fullmatch(p.stem)) and match["worker"] == self.worker_id
        ]
        self._last_seq = max([time.time_ns() // 1000, self._last_seq + 1, *(u + 1 for u in used)])
        return self._last_seq

    def _rotate_due(self) -> None:
        now = time.monotonic()
        for model, (segment, opened) in list(self._segments.items()):
            too_old = now - opened >= self._segment_max_seconds
            if segment.size >= self._segment_max_bytes or too_old:
                self._seal(model)

    def _seal(self, model: str) -> None:
        segment, _ = self._segments.pop(model)
        try:
            segment.seal()
        except OSError as exc:  # still an .open file: a compactor seals what is whole
            logger.error(
                "prediction log %s: could not seal %s: %s", self.worker_id, segment.path, exc
            )
            segment.abandon()

    def _seal_all(self) -> None:
        for model in list(self._segments):
            self._seal(model)


def _days_since(first: date) -> set[date]:
    """Feedback comes after its prediction: the partitions from its day to tomorrow."""
    today = datetime.now(UTC).date() + timedelta(days=1)
    days, day = set(), first
    while day <= today:
        days.add(day)
        day += timedelta(days=1)
    return days


@dataclass
class _Tail:
    offset: int = 0
    predictions: list[str] = field(default_factory=list)
    feedback: list[str] = field(default_factory=list)


class _Index:
    """Ids in one model's segments on this machine, kept up to date by tailing the files."""

    def __init__(self, spool: Path, model: str) -> None:
        self._spool = spool
        self._model = model
        self._lock = threading.Lock()
        self._tails: dict[str, _Tail] = {}
        self._versions: dict[str, tuple[int, str]] = {}  # time kept as logged, parsed on use
        self._labels: dict[str, tuple[datetime, Any]] = {}

    def lookup(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        with self._lock:
            self._refresh()
            found = {}
            for identifier in ids:
                if (entry := self._versions.get(identifier)) is not None:
                    found[identifier] = {
                        "version": entry[0],
                        "feedback": self._label(identifier),
                        "_time": parse_time(entry[1]),
                    }
            return found

    def feedback_label(self, identifier: str) -> Any:
        with self._lock:
            return self._label(identifier)

    def _label(self, identifier: str) -> Any:
        entry = self._labels.get(identifier)
        return None if entry is None else entry[1]

    def _refresh(self) -> None:
        present = {p.stem: p for p in list_segments(self._spool, self._model)}
        for stem in set(self._tails) - set(present):  # compacted: now in Parquet
            tail = self._tails.pop(stem)
            for identifier in tail.predictions:
                self._versions.pop(identifier, None)
            for identifier in tail.feedback:
                self._labels.pop(identifier, None)
        for stem, path in present.items():
            self._read_new(self._tails.setdefault(stem, _Tail()), path)

    def _read_new(self, tail: _Tail, path: Path) -> None:
        for candidate in (path, path.with_suffix(SEALED_SUFFIX)):
            try:
                with open(candidate, "rb") as handle:
                    handle.seek(tail.offset)
                    data = handle.read()
                break
            except FileNotFoundError:
                continue
        else:
            return
        consumed = 0
        for kind, body, end in iter_frames(data, 0):
            consumed = end
            if kind == KIND_PREDICTIONS:
                for record in orjson.loads(body):
                    self._versions[record["id"]] = (record["version"], record["time"])
                    tail.predictions.append(record["id"])
            elif kind == KIND_FEEDBACK:
                for record in orjson.loads(body):
                    moment = parse_time(record["time"])
                    earlier = self._labels.get(record["id"])
                    if earlier is None or moment < earlier[0]:
                        self._labels[record["id"]] = (moment, record["label"])
                    tail.feedback.append(record["id"])
        tail.offset += consumed

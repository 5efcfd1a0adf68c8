"""Segment files: the append-only, CRC-checked form of the prediction log on local disk.

A segment is a sequence of frames; each frame is

    b"MCL" | kind (1 byte) | payload length (uint32 LE) | CRC-32 (uint32 LE) | payload (JSON)

and the CRC covers the kind, the length and the payload, so a flipped bit anywhere is caught
instead of misread. Kinds: `H` header (format, model, worker, seq), `P` a batch of prediction
records, `F` a batch of feedback records, `E` the end (batch and record counts). One write
call carries one frame per batch and the group is fsynced once, so a batch is all or nothing.

A segment is written as `<worker>-<seq>.open` by exactly one writer, which holds an exclusive
`flock` on it for as long as it lives; sealing appends `E` and renames it `<worker>-<seq>.seg`.
A writer that dies (kill -9, power loss) leaves an `.open` file whose last frame may be torn:
an invalid frame with no valid frame after it is a torn tail (an unacknowledged write) and is
skipped; an invalid frame followed by a valid one, or a sealed segment without its `E`, is
corruption, and the segment is refused by name.

Why this format and not SQLite (measured on this machine, 2 cores, load 9, fsync ~5 ms): per
group commit the framed file wrote 1,900-2,000 records/s in groups of 16 and 39,000-49,000 in
groups of 256, SQLite in WAL mode with `synchronous=FULL` 1,600-2,100 and 22,500-30,200; both
are bound by fsync, but SQLite has no checksum on its pages, so a corrupted page can be read
back as different values rather than refused. orjson encodes a record in 1.2 us (json: 17 us).
"""

from __future__ import annotations

import fcntl
import os
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from modelcycle.errors import ModelcycleError

MAGIC = b"MCL"
FORMAT = "modelcycle-prediction-log/1"
HEADER = struct.Struct("<3scII")  # magic, kind, payload length, crc32
KIND_HEADER, KIND_PREDICTIONS, KIND_FEEDBACK, KIND_END = b"H", b"P", b"F", b"E"
KINDS = frozenset({KIND_HEADER, KIND_PREDICTIONS, KIND_FEEDBACK, KIND_END})
MAX_FRAME = 1 << 30
OPEN_SUFFIX, SEALED_SUFFIX = ".open", ".seg"
SEGMENTS_DIR = "segments"
_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")
STEM = re.compile(r"(?P<worker>[A-Za-z0-9._-]+)-(?P<seq>\d{20})")


class CorruptSegmentError(ModelcycleError):
    """A segment's bytes are damaged (not merely cut short by a crash); it is read by no one."""


def check_name(kind: str, value: object) -> str:
    """A model or worker name we can put in a file name without escaping the folder."""
    if not isinstance(value, str) or not _NAME.fullmatch(value) or value.startswith("."):
        raise ValueError(
            f"{kind} {value!r}: expected 1-128 letters, digits, '.', '_' or '-', "
            "not starting with '.'"
        )
    return value


def _plain(value: Any) -> Any:
    """numpy scalars (what `predict_proba` returns) as the Python values they hold."""
    if hasattr(value, "item") and hasattr(value, "dtype"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encode_frame(kind: bytes, payload: Any) -> bytes:
    """One frame; raises TypeError (orjson.JSONEncodeError) for a value JSON cannot hold."""
    body = orjson.dumps(payload, default=_plain)
    head = struct.pack("<cI", kind, len(body))
    return MAGIC + head + struct.pack("<I", zlib.crc32(head + body)) + body


def _frame_at(data: bytes | memoryview, pos: int) -> tuple[bytes, bytes, int] | None:
    """The frame starting at `pos` as (kind, payload, end), or None when it is not whole."""
    if len(data) - pos < HEADER.size:
        return None
    magic, kind, length, crc = HEADER.unpack_from(data, pos)
    end = pos + HEADER.size + length
    if magic != MAGIC or kind not in KINDS or length > MAX_FRAME or end > len(data):
        return None
    body = bytes(data[pos + HEADER.size : end])
    if zlib.crc32(bytes(data[pos + 3 : pos + 8]) + body) != crc:
        return None
    return kind, body, end


def _valid_frame_after(data: bytes, pos: int) -> int | None:
    """Offset of the first whole, CRC-valid frame after `pos`, if any (a resync scan)."""
    start = pos + 1
    while (found := data.find(MAGIC, start)) != -1:
        if _frame_at(data, found) is not None:
            return found
        start = found + 1
    return None


@dataclass
class SegmentContents:
    """What a segment holds: its header and every whole batch, in order."""

    path: Path
    header: dict[str, Any]
    predictions: list[dict[str, Any]] = field(default_factory=list)
    feedback: list[dict[str, Any]] = field(default_factory=list)
    batches: int = 0
    sealed: bool = False
    valid_bytes: int = 0
    torn_bytes: int = 0


def parse_stem(stem: str) -> tuple[str, str]:
    match = STEM.fullmatch(stem)
    if match is None:
        raise CorruptSegmentError(f"segment {stem!r}: name is not <worker>-<20-digit seq>")
    return match["worker"], match["seq"]


def read_segment(path: Path) -> SegmentContents:
    """Every whole batch of one segment; a torn tail is skipped, damage raises by file name."""
    data = path.read_bytes()
    sealed_name = path.suffix == SEALED_SUFFIX
    first = _frame_at(data, 0)
    if first is None or first[0] != KIND_HEADER:
        if not sealed_name and _valid_frame_after(data, 0) is None:
            # Created and killed before its header reached the disk: nothing was acknowledged.
            return SegmentContents(path, {}, torn_bytes=len(data))
        raise CorruptSegmentError(f"{path}: no valid header frame at offset 0")
    header = orjson.loads(first[1])
    worker, seq = parse_stem(path.stem)
    if header.get("format") != FORMAT or (header.get("worker"), header.get("seq")) != (
        worker,
        seq,
    ):
        raise CorruptSegmentError(
            f"{path}: header {header!r} does not match the file name (format {FORMAT})"
        )
    contents = SegmentContents(path, header)
    pos = first[2]
    while pos < len(data):
        frame = _frame_at(data, pos)
        if frame is None:
            if sealed_name or _valid_frame_after(data, pos) is not None:
                raise CorruptSegmentError(f"{path}: damaged frame at byte {pos}")
            contents.torn_bytes = len(data) - pos
            break
        kind, body, end = frame
        if contents.sealed:
            raise CorruptSegmentError(f"{path}: data after the end frame at byte {pos}")
        if kind == KIND_PREDICTIONS:
            contents.predictions.extend(orjson.loads(body))
            contents.batches += 1
        elif kind == KIND_FEEDBACK:
            contents.feedback.extend(orjson.loads(body))
            contents.batches += 1
        elif kind == KIND_END:
            _check_end(path, contents, orjson.loads(body))
            contents.sealed = True
        else:
            raise CorruptSegmentError(f"{path}: a second header frame at byte {pos}")
        pos = end
    contents.valid_bytes = pos
    if sealed_name and not contents.sealed:
        raise CorruptSegmentError(f"{path}: sealed segment has no end frame")
    return contents


def _check_end(path: Path, contents: SegmentContents, end: dict[str, Any]) -> None:
    records = len(contents.predictions) + len(contents.feedback)
    if end.get("batches") != contents.batches or end.get("records") != records:
        raise CorruptSegmentError(
            f"{path}: end frame counts {end!r} but the segment holds "
            f"{contents.batches} batches, {records} records"
        )


def iter_frames(data: bytes, pos: int) -> Iterator[tuple[bytes, bytes, int]]:
    """Whole frames from `pos` until the first one that is not (yet) whole: for tailing."""
    while (frame := _frame_at(data, pos)) is not None:
        yield frame
        pos = frame[2]


def segments_dir(spool: Path, model: str) -> Path:
    return spool / model / SEGMENTS_DIR


def list_segments(spool: Path, model: str) -> list[Path]:
    """Open and sealed segments of a model, oldest first; hidden files are work in progress."""
    folder = segments_dir(spool, model)
    if not folder.is_dir():
        return []
    found = [
        p
        for p in folder.iterdir()
        if not p.name.startswith(".") and p.suffix in (OPEN_SUFFIX, SEALED_SUFFIX)
    ]
    return sorted(found, key=lambda p: (p.stem.rsplit("-", 1)[-1], p.stem))


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def try_lock(fd: int) -> bool:
    """Take the writer's lock without waiting: False when a live writer holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class SegmentFile:
    """The one open segment a writer appends to; only the writer thread touches it."""

    def __init__(self, spool: Path, model: str, worker: str, seq: int, created: str) -> None:
        folder = segments_dir(spool, model)
        folder.mkdir(parents=True, exist_ok=True)
        self.stem = f"{worker}-{seq:020d}"
        self.path = folder / f"{self.stem}{OPEN_SUFFIX}"
        # Written under a hidden name and renamed once locked and headed, so a compactor never
        # sees (and seals) a segment whose writer has not taken its lock yet.
        hidden = folder / f".{self.stem}.new"
        self.fd = os.open(hidden, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        if not try_lock(self.fd):  # pragma: no cover - the file is brand new
            raise RuntimeError(f"{hidden}: could not lock a new segment")
        header = {"format": FORMAT, "model": model, "worker": worker, "seq": f"{seq:020d}"}
        header["created"] = created
        self.size = self._write(encode_frame(KIND_HEADER, header))
        os.fsync(self.fd)
        os.rename(hidden, self.path)
        fsync_dir(folder)
        self.batches = 0
        self.records = 0

    def _write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
        return len(data)

    def append(self, frames: bytes, batches: int, records: int) -> None:
        """Append whole frames; the caller fsyncs (once per group, across segments)."""
        self.size += self._write(frames)
        self.batches += batches
        self.records += records

    def sync(self) -> None:
        os.fsync(self.fd)

    def seal(self) -> Path:
        """End frame, fsync, rename to `.seg`: from now on it is complete and compactable."""
        self._write(encode_frame(KIND_END, {"batches": self.batches, "records": self.records}))
        os.fsync(self.fd)
        sealed = self.path.with_suffix(SEALED_SUFFIX)
        os.rename(self.path, sealed)
        fsync_dir(self.path.parent)
        os.close(self.fd)
        return sealed

    def truncate(self, size: int) -> None:
        """Cut a group whose write or fsync failed, so its refused records are not read back.

        Best effort: after a failed fsync nothing about the file is certain."""
        try:
            os.ftruncate(self.fd, size)
            self.size = size
        except OSError:
            pass

    def abandon(self) -> None:
        """Close without sealing (after a failed write): a compactor seals what is whole."""
        os.close(self.fd)


def seal_orphan(path: Path) -> Path | None:
    """Seal an `.open` segment whose writer is gone: cut the torn tail, end it, rename it.

    Returns None when a live writer still holds it. Raises CorruptSegmentError when damaged.
    """
    fd = os.open(path, os.O_RDWR)
    try:
        if not try_lock(fd):
            return None
        contents = read_segment(path)
        if not contents.header:  # never got its header: nothing in it was ever acknowledged
            os.unlink(path)
            fsync_dir(path.parent)
            return None
        os.ftruncate(fd, contents.valid_bytes)
        records = len(contents.predictions) + len(contents.feedback)
        end = encode_frame(KIND_END, {"batches": contents.batches, "records": records})
        os.lseek(fd, 0, os.SEEK_END)
        os.write(fd, end)
        os.fsync(fd)
        sealed = path.with_suffix(SEALED_SUFFIX)
        os.rename(path, sealed)
        fsync_dir(path.parent)
        return sealed
    finally:
        os.close(fd)

"""The record of every log window monitored: where the next scheduled run starts, and the
estimate against the realised quality over time, back-filled as late labels arrive.

Run folders are immutable (their manifests hash them), but a window's realised figures change
when its labels come in days later; this small JSON file is the one mutable record, rewritten
whole under a lock (temporary file, fsync, rename), so a crash leaves the old or the new one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from modelcycle.errors import DataError
from modelcycle.utils import json_ready

HISTORY_FILE = "windows.json"


def history_path(home: Path, model: str) -> Path:
    return Path(home) / "monitoring" / model / HISTORY_FILE


@dataclass
class WindowRecord:
    """One monitored log window; `versions` maps each answering version to its rows, labels,
    estimate and realised figures (with intervals), as of `updated_at`."""

    run_id: str
    since: str | None
    until: str
    monitored_version: int
    status: str
    versions: dict[str, dict[str, Any]]
    recorded_at: str
    updated_at: str
    backfills: int = 0
    service: list[dict[str, Any]] = field(default_factory=list)
    fairness: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    drift: dict[str, float | None] = field(default_factory=dict)

    def labelled(self) -> int:
        return sum(int(v.get("labelled", 0)) for v in self.versions.values())

    def rows(self) -> int:
        return sum(int(v.get("rows", 0)) for v in self.versions.values())


class WindowHistory:
    """The windows.json of one model, oldest window first."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def load(self) -> list[WindowRecord]:
        if not self.path.exists():
            return []
        try:
            raw = json.loads(self.path.read_text())
            return [WindowRecord(**item) for item in raw["windows"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(
                f"{self.path}: not a monitoring window history ({exc}); move it aside to "
                "start a new one"
            ) from None

    def last_until(self) -> datetime | None:
        """Where the next "since the last run" window starts."""
        records = self.load()
        return datetime.fromisoformat(records[-1].until) if records else None

    @contextlib.contextmanager
    def locked(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.parent / ".windows.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def save(self, records: list[WindowRecord]) -> None:
        """Replace the file whole; call inside `locked()`."""
        records = sorted(records, key=lambda r: (r.until, r.recorded_at))
        body = json.dumps(
            json_ready({"windows": [r.__dict__ for r in records]}), indent=1, sort_keys=True
        )
        temporary = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        with open(temporary, "w") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)

    def record(self, new: WindowRecord, updated: list[WindowRecord]) -> list[WindowRecord]:
        """Add this run's window and the back-filled earlier ones, in one rewrite."""
        with self.locked():
            records = {(r.run_id): r for r in self.load()}
            for record in [*updated, new]:
                records[record.run_id] = record
            ordered = list(records.values())
            self.save(ordered)
        return sorted(ordered, key=lambda r: (r.until, r.recorded_at))


def due_for_backfill(records: list[WindowRecord], limit: int) -> list[WindowRecord]:
    """The newest `limit` earlier windows that still miss labels."""
    missing = [r for r in records if r.labelled() < r.rows()]
    return missing[-limit:] if limit else []

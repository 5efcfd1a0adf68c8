"""The audit log's hash chain: how an entry is hashed, and how a model's chain is walked.

Each model has its own chain (writers of one model are already serialised by its row lock, and
`audit verify NAME` then reads one model's entries only). Entry `seq` n carries the hash of
entry n-1 (`prev_hash`) and the hash of its own content including that link (`entry_hash`), so
editing, removing, reordering or inserting an entry breaks every link after it. What a chain
cannot show on its own is the newest entries being cut off, or the whole chain recomputed by
someone who can write the file: `audit verify` prints the head hash so it can be kept elsewhere.

A registry written before the chain existed is upgraded in place: its first chained entry
(`audit-chain-start`) seals the hash of every earlier entry, which were not protected before.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from modelcycle.utils import to_json_dict

CHAIN_START = "audit-chain-start"
UPGRADE_ACTOR = "modelcycle-upgrade"


def genesis(model_name: str) -> str:
    """What the first entry of a model's chain links to: bound to the model, so an entry
    cannot be moved to another model's chain."""
    return hashlib.sha256(f"modelcycle-audit-chain:{model_name}".encode()).hexdigest()


def entry_hash(
    *,
    model_name: str,
    seq: int | None,
    at: datetime,
    actor: str,
    action: str,
    version: int | None,
    reason: str,
    details: Mapping[str, Any],
    prev_hash: str | None,
) -> str:
    """SHA-256 of the entry's canonical JSON; every column but the database's own id."""
    payload = {
        "model_name": model_name,
        "seq": seq,
        "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor": actor,
        "action": action,
        "version": version,
        "reason": reason,
        "details": details,
        "prev_hash": prev_hash,
    }
    text = json.dumps(
        payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def row_hash(row: Any) -> str:
    """The hash a stored row should carry, recomputed from its columns."""
    return entry_hash(
        model_name=row.model_name,
        seq=row.seq,
        at=row.at,
        actor=row.actor,
        action=row.action,
        version=row.version,
        reason=row.reason,
        details=dict(row.details),
        prev_hash=row.prev_hash,
    )


@dataclass(frozen=True)
class ChainReport:
    """What walking one model's audit chain found; `broken_entry` is the first bad entry."""

    model_name: str
    entries: int
    chained: int
    sealed_legacy: int
    head: str | None
    broken_entry: int | None = None
    problem: str | None = None

    @property
    def intact(self) -> bool:
        return self.problem is None

    def to_dict(self) -> dict[str, Any]:
        return {**to_json_dict(self), "intact": self.intact}

    def summary(self) -> str:
        if not self.intact:
            where = f"entry #{self.broken_entry}"
            return f"{self.model_name}: audit chain broken at {where}: {self.problem}"
        legacy = (
            f", the first {self.sealed_legacy} written before the chain existed and sealed by it"
            if self.sealed_legacy
            else ""
        )
        head = self.head or "none"
        return f"{self.model_name}: {self.entries} entries, chain intact{legacy}; head {head}"


def walk_chain(model_name: str, rows: Iterable[Any]) -> ChainReport:
    """Check a model's entries (oldest first, by id) link up; stop at the first that does not."""
    rows = list(rows)
    legacy: list[Any] = []
    expected_prev, expected_seq, chained = genesis(model_name), 1, 0
    sealed = 0

    def broken(row: Any, problem: str) -> ChainReport:
        return ChainReport(model_name, len(rows), chained, sealed, None, row.id, problem)

    for row in rows:
        if row.seq is None:
            if chained:
                return broken(
                    row,
                    "it carries no place in the chain but was written after the chain started "
                    "(inserted around the registry)",
                )
            legacy.append(row)
            continue
        if row.seq != expected_seq:
            return broken(
                row,
                f"it is at position {row.seq} where position {expected_seq} was expected "
                "(an entry before it was removed, or entries were reordered)",
            )
        if row.prev_hash != expected_prev:
            return broken(row, "its link to the previous entry does not match that entry's hash")
        if row.entry_hash != row_hash(row):
            return broken(row, "its content was changed after it was written (hash differs)")
        if expected_seq == 1 and (legacy or row.action == CHAIN_START):
            problem, culprit = _sealed_legacy_problem(row, legacy)
            if problem is not None:
                return broken(culprit, problem)
            sealed = len(legacy)
        chained += 1
        expected_prev, expected_seq = row.entry_hash, expected_seq + 1
    if legacy and not chained:
        return broken(legacy[0], "entries written before the chain existed are sealed by none")
    return ChainReport(model_name, len(rows), chained, sealed, expected_prev if chained else None)


def legacy_seal(rows: Iterable[Any]) -> list[list[Any]]:
    """[id, hash] of each entry written before the chain: what the chain-start entry seals."""
    return [[row.id, row_hash(row)] for row in rows]


def _sealed_legacy_problem(start: Any, legacy: list[Any]) -> tuple[str | None, Any]:
    if start.action != CHAIN_START:
        return "entries written before the chain are not sealed by a chain-start entry", legacy[0]
    sealed = {int(i): h for i, h in start.details.get("legacy", [])}
    found = {row.id: row for row in legacy}
    for entry_id in sorted(set(sealed) | set(found)):
        if entry_id not in found:
            return (
                f"entry #{entry_id}, written before the chain and sealed by entry #{start.id}, "
                "is missing",
                start,
            )
        if entry_id not in sealed:
            return (
                f"it was not there when entry #{start.id} sealed the earlier entries",
                found[entry_id],
            )
        if row_hash(found[entry_id]) != sealed[entry_id]:
            return (
                f"its content was changed after entry #{start.id} sealed it (hash differs)",
                found[entry_id],
            )
    return None, None

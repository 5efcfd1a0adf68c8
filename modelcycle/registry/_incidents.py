"""Incidents: what monitoring found that needs a person, in the registry's database.

An incident is opened when a monitoring run ends in `drift` or with realised quality past a
gate floor. While it is open (or acknowledged), the same kind of finding on the same model
adds an occurrence and a note to it instead of opening another; a partial unique index
makes that hold even for two monitoring runs racing. Every change is a note, so the history
of an incident is never rewritten.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from modelcycle.errors import RegistryError
from modelcycle.registry._sql import SQLStore, UTCDateTime, metadata
from modelcycle.utils import to_json_dict


class IncidentStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class Severity(StrEnum):
    WARNING = "warning"
    HIGH = "high"
    CRITICAL = "critical"


_RANK = {Severity.WARNING: 0, Severity.HIGH: 1, Severity.CRITICAL: 2}
_ACTIVE = (IncidentStatus.OPEN.value, IncidentStatus.ACKNOWLEDGED.value)
_STATUS_SQL = ", ".join(f"'{s.value}'" for s in IncidentStatus)

incidents = sa.Table(
    "incidents",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model_name", sa.String(128), nullable=False, index=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("evidence_folder", sa.Text, nullable=False),
    sa.Column("occurrences", sa.Integer, nullable=False),
    sa.Column("opened_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("resolved_at", UTCDateTime, nullable=True),
    sa.CheckConstraint(f"status IN ({_STATUS_SQL})", name="ck_incidents_status"),
    # At most one unresolved incident per model and kind, whatever the callers do.
    sa.Index(
        "uq_incidents_active",
        "model_name",
        "kind",
        unique=True,
        sqlite_where=sa.text("status != 'resolved'"),
        postgresql_where=sa.text("status != 'resolved'"),
    ),
)

incident_notes = sa.Table(
    "incident_notes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id"), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("evidence_folder", sa.Text, nullable=True),
    sa.Column("details", sa.JSON, nullable=False),
)


@dataclass(frozen=True)
class IncidentNote:
    at: datetime
    actor: str
    action: str
    note: str
    evidence_folder: str | None
    details: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return to_json_dict(self)


@dataclass(frozen=True)
class Incident:
    id: int
    model_name: str
    version: int
    kind: str
    severity: Severity
    status: IncidentStatus
    summary: str
    evidence_folder: str
    occurrences: int
    opened_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    notes: list[IncidentNote] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return to_json_dict(self)


@dataclass(frozen=True)
class Recorded:
    incident: Incident
    opened: bool  # False: an open incident of the same kind was updated


class IncidentLog(SQLStore):
    """Incidents on the registry's SQLAlchemy URL, in their own tables."""

    tables = (incidents, incident_notes)
    refused = "incident write refused"  # a concurrent run kept opening the same incident

    # -- writes ------------------------------------------------------------------------------

    def record(
        self,
        *,
        model_name: str,
        version: int,
        kind: str,
        severity: Severity,
        summary: str,
        evidence_folder: str,
        details: dict[str, Any],
        actor: str,
    ) -> Recorded:
        """Open an incident, or add this occurrence to the unresolved one of the same kind."""
        if not summary.strip():
            raise RegistryError("an incident needs a summary")

        def work(conn: Connection) -> Recorded:
            now = datetime.now(UTC)
            active = conn.execute(
                incidents.select().where(
                    incidents.c.model_name == model_name,
                    incidents.c.kind == kind,
                    incidents.c.status.in_(_ACTIVE),
                )
            ).first()
            if active is None:
                incident_id = conn.execute(
                    incidents.insert().values(
                        model_name=model_name,
                        version=version,
                        kind=kind,
                        severity=severity.value,
                        status=IncidentStatus.OPEN.value,
                        summary=summary,
                        evidence_folder=evidence_folder,
                        occurrences=1,
                        opened_at=now,
                        updated_at=now,
                        resolved_at=None,
                    )
                ).inserted_primary_key[0]
                _note(conn, incident_id, now, actor, "opened", summary, evidence_folder, details)
                return Recorded(_load(conn, incident_id), True)
            worst = max(Severity(active.severity), severity, key=_RANK.__getitem__)
            conn.execute(
                incidents.update()
                .where(incidents.c.id == active.id)
                .values(
                    occurrences=active.occurrences + 1,
                    updated_at=now,
                    severity=worst.value,
                    version=version,
                )
            )
            _note(conn, active.id, now, actor, "recurred", summary, evidence_folder, details)
            return Recorded(_load(conn, active.id), False)

        return self._transact(work)

    def acknowledge(self, incident_id: int, *, note: str, actor: str) -> Incident:
        return self._move(incident_id, IncidentStatus.ACKNOWLEDGED, note, actor)

    def resolve(self, incident_id: int, *, note: str, actor: str) -> Incident:
        return self._move(incident_id, IncidentStatus.RESOLVED, note, actor)

    def _move(self, incident_id: int, to: IncidentStatus, note: str, actor: str) -> Incident:
        if not note.strip():
            raise RegistryError(f"incident {incident_id}: a note saying why is required")

        def work(conn: Connection) -> Incident:
            row = _row(conn, incident_id)
            if row.status == IncidentStatus.RESOLVED.value:
                raise RegistryError(f"incident {incident_id} is already resolved")
            now = datetime.now(UTC)
            values: dict[str, Any] = {"status": to.value, "updated_at": now}
            if to is IncidentStatus.RESOLVED:
                values["resolved_at"] = now
            conn.execute(incidents.update().where(incidents.c.id == incident_id).values(**values))
            action = "resolved" if to is IncidentStatus.RESOLVED else "acknowledged"
            _note(conn, incident_id, now, actor, action, note, None, {})
            return _load(conn, incident_id)

        return self._transact(work)

    # -- reads -------------------------------------------------------------------------------

    def get(self, incident_id: int) -> Incident:
        with self._read() as conn:
            return _load(conn, incident_id)

    def list(self, model_name: str | None = None, include_resolved: bool = True) -> list[Incident]:
        query = incidents.select().order_by(incidents.c.id)
        if model_name is not None:
            query = query.where(incidents.c.model_name == model_name)
        if not include_resolved:
            query = query.where(incidents.c.status.in_(_ACTIVE))
        with self._read() as conn:
            return [_incident(row, []) for row in conn.execute(query)]


def _note(
    conn: Connection,
    incident_id: int,
    at: datetime,
    actor: str,
    action: str,
    note: str,
    evidence_folder: str | None,
    details: dict[str, Any],
) -> None:
    conn.execute(
        incident_notes.insert().values(
            incident_id=incident_id,
            at=at,
            actor=actor,
            action=action,
            note=note,
            evidence_folder=evidence_folder,
            details=details,
        )
    )


def _row(conn: Connection, incident_id: int) -> Row[Any]:
    row = conn.execute(incidents.select().where(incidents.c.id == incident_id)).first()
    if row is None:
        raise RegistryError(f"no incident with id {incident_id}")
    return row


def _load(conn: Connection, incident_id: int) -> Incident:
    row = _row(conn, incident_id)
    notes = conn.execute(
        incident_notes.select()
        .where(incident_notes.c.incident_id == incident_id)
        .order_by(incident_notes.c.id)
    )
    return _incident(
        row,
        [
            IncidentNote(n.at, n.actor, n.action, n.note, n.evidence_folder, dict(n.details))
            for n in notes
        ],
    )


def _incident(row: Row[Any], notes: list[IncidentNote]) -> Incident:
    return Incident(
        id=row.id,
        model_name=row.model_name,
        version=row.version,
        kind=row.kind,
        severity=Severity(row.severity),
        status=IncidentStatus(row.status),
        summary=row.summary,
        evidence_folder=row.evidence_folder,
        occurrences=row.occurrences,
        opened_at=row.opened_at,
        updated_at=row.updated_at,
        resolved_at=row.resolved_at,
        notes=notes,
    )

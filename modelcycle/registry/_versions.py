"""The model registry: versions, the champion alias and an append-only audit log.

Every move (register, promote, rollback, retire) is one transaction that also writes its audit
entry: either all of it is recorded or none of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from modelcycle.errors import RegistryError
from modelcycle.registry._records import (
    UNPROMOTABLE,
    AuditEntry,
    ModelRecord,
    ModelVersion,
    Registration,
    VersionStatus,
    check_json,
    check_text,
    check_version_number,
    registrable_status,
)
from modelcycle.registry._sql import ATTEMPTS, SQLStore, UTCDateTime, metadata

CHAMPION = "champion"

models = sa.Table(
    "models",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("owner", sa.String(256), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

_STATUS_SQL = ", ".join(f"'{s.value}'" for s in VersionStatus)

model_versions = sa.Table(
    "model_versions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model_name", sa.String(128), sa.ForeignKey("models.name"), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("run_id", sa.String(256), nullable=False),
    sa.Column("artifact_uri", sa.Text, nullable=False),
    sa.Column("model_file", sa.String(256), nullable=False),
    sa.Column("model_sha256", sa.String(64), nullable=False),
    sa.Column("data_fingerprint", sa.String(256), nullable=False),
    sa.Column("config_hash", sa.String(256), nullable=False),
    sa.Column("code_version", sa.String(256), nullable=False),
    sa.Column("package_versions", sa.JSON, nullable=False),
    sa.Column("parent_version", sa.Integer, nullable=True),
    sa.Column("metrics", sa.JSON, nullable=False),
    sa.Column("gate", sa.JSON, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("created_by", sa.String(256), nullable=False),
    sa.UniqueConstraint("model_name", "version", name="uq_model_versions_model_version"),
    # One flow run makes one version; a retried registration task must not make two.
    sa.UniqueConstraint("model_name", "run_id", name="uq_model_versions_model_run"),
    sa.CheckConstraint(f"status IN ({_STATUS_SQL})", name="ck_model_versions_status"),
    sa.CheckConstraint("version >= 1", name="ck_model_versions_version"),
)

aliases = sa.Table(
    "aliases",
    metadata,
    sa.Column("model_name", sa.String(128), nullable=False),
    sa.Column("alias", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    # One row per (model, alias): two champions cannot exist, whatever the code does.
    sa.PrimaryKeyConstraint("model_name", "alias", name="pk_aliases"),
    sa.ForeignKeyConstraint(
        ["model_name", "version"],
        ["model_versions.model_name", "model_versions.version"],
        name="fk_aliases_version",
    ),
)

audit = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("model_name", sa.String(128), nullable=False, index=True),
    sa.Column("version", sa.Integer, nullable=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("details", sa.JSON, nullable=False),
)


class Registry(SQLStore):
    """Registry on any SQLAlchemy URL; connects on first use, not on construction."""

    tables = (models, model_versions, aliases, audit)
    refused = f"registry write refused after {ATTEMPTS} attempts"

    # -- writes ----------------------------------------------------------------------------

    def register_version(
        self, registration: Registration, *, status: VersionStatus, actor: str, reason: str
    ) -> ModelVersion:
        """Record a new version numbered max+1; a gate failure is recorded too, as `rejected`.

        The model row is created or its owner/description refreshed from the config, in the
        same transaction as the version and its audit entry. Registering the same run again
        with the same file and status returns the version already recorded (task retries).
        """
        status = registrable_status(status)
        check_text("actor", actor)
        check_text("reason", reason)
        r = registration
        model_name, run_id, sha, parent_version = (
            r.model_name,
            r.run_id,
            r.model_sha256,
            r.parent_version,
        )
        owner, description = r.owner, r.description
        row = {
            "model_name": model_name,
            "status": status.value,
            "run_id": run_id,
            "artifact_uri": r.artifact_uri,
            "model_file": r.model_file,
            "model_sha256": sha,
            "data_fingerprint": r.data_fingerprint,
            "config_hash": r.config_hash,
            "code_version": r.code_version,
            "package_versions": r.package_versions,
            "parent_version": parent_version,
            "metrics": r.metrics,
            "gate": r.gate,
            "created_by": actor,
        }
        action = "reject" if status is VersionStatus.REJECTED else "register"

        def work(conn: Connection) -> ModelVersion:
            now = _now()
            _upsert_model(conn, model_name, owner, description, now)
            _lock_model(conn, model_name)
            again = _same_run(conn, model_name, run_id, sha, status)
            if again is not None:
                return again
            if parent_version is not None:
                _version_row(conn, model_name, parent_version, role="parent_version")
            version = _next_version(conn, model_name)
            conn.execute(model_versions.insert().values(**row, version=version, created_at=now))
            _insert_audit(
                conn,
                at=now,
                actor=actor,
                action=action,
                model_name=model_name,
                version=version,
                reason=reason,
                details={"run_id": run_id, "model_sha256": sha, "parent_version": parent_version},
            )
            return _version(conn, _version_row(conn, model_name, version))

        return self._transact(work)

    def promote(
        self, model_name: str, version: int, *, actor: str, reason: str, force: bool = False
    ) -> ModelVersion:
        """Make `version` the champion; the previous champion becomes `archived`.

        Refused, with nothing changed, for unknown versions, for the version that already is
        champion, and for rejected or retired versions unless `force` (the audit entry then
        records that it was forced and what the status was).
        """
        check_version_number("version", version)
        check_text("actor", actor)
        check_text("reason", reason)
        return self._transact(
            lambda conn: _move_champion(conn, model_name, version, actor, reason, "promote", force)
        )

    def rollback(self, model_name: str, *, actor: str, reason: str) -> ModelVersion:
        """Give the champion alias back to the version the current champion replaced.

        That version comes from the audit entry that made the current champion, so a second
        rollback undoes the first. Refused if that version has been retired or rejected since.
        """
        check_text("actor", actor)
        check_text("reason", reason)

        def work(conn: Connection) -> ModelVersion:
            _lock_model(conn, model_name)
            current = _alias_version(conn, model_name, CHAMPION)
            if current is None:
                raise RegistryError(f"model {model_name!r} has no champion to roll back from")
            previous = _previous_champion(conn, model_name, current)
            return _move_champion(conn, model_name, previous, actor, reason, "rollback")

        return self._transact(work)

    def retire(
        self, model_name: str, version: int, *, actor: str, reason: str, force: bool = False
    ) -> ModelVersion:
        """Take a version out of use for good; a retired version is never champion again
        unless a forced promotion brings it back.

        Retiring the champion needs `force`: the alias then goes back to the champion it
        replaced (if that one can still serve), or the model is left without a champion.
        """
        check_version_number("version", version)
        check_text("actor", actor)
        check_text("reason", reason)

        def work(conn: Connection) -> ModelVersion:
            _lock_model(conn, model_name)
            row = _version_row(conn, model_name, version)
            status = VersionStatus(row.status)
            if status is VersionStatus.RETIRED:
                raise RegistryError(f"version {version} of {model_name!r} is already retired")
            details: dict[str, Any] = {"previous_status": status.value, "forced": False}
            if status is VersionStatus.CHAMPION:
                if not force:
                    raise RegistryError(
                        f"version {version} of {model_name!r} is the champion; promote another "
                        "version or roll back before retiring it, or force it (--force), which "
                        "hands the alias back to the previous champion or leaves none"
                    )
                details.update(forced=True, champion_now=_retire_champion(conn, model_name))
            _set_status(conn, model_name, version, VersionStatus.RETIRED)
            _insert_audit(
                conn,
                at=_now(),
                actor=actor,
                action="retire",
                model_name=model_name,
                version=version,
                reason=reason,
                details=details,
            )
            return _version(conn, _version_row(conn, model_name, version))

        return self._transact(work)

    def append_audit(
        self,
        *,
        actor: str,
        action: str,
        model_name: str,
        reason: str,
        version: int | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> AuditEntry:
        """Record an event that changes no registry row (a gate decision, a drift incident)."""
        check_text("actor", actor)
        check_text("action", action)
        check_text("reason", reason)
        payload = check_json("details", dict(details or {}))

        def work(conn: Connection) -> AuditEntry:
            _model_row(conn, model_name)
            if version is not None:
                _version_row(conn, model_name, version)
            entry_id = _insert_audit(
                conn,
                at=_now(),
                actor=actor,
                action=action,
                model_name=model_name,
                version=version,
                reason=reason,
                details=payload,
            )
            row = conn.execute(sa.select(audit).where(audit.c.id == entry_id)).one()
            return _audit_entry(row)

        return self._transact(work)

    # -- reads -----------------------------------------------------------------------------

    def get_model(self, name: str) -> ModelRecord:
        with self._read() as conn:
            return _model(_model_row(conn, name))

    def list_models(self) -> list[ModelRecord]:
        with self._read() as conn:
            rows = conn.execute(sa.select(models).order_by(models.c.name)).all()
        return [_model(row) for row in rows]

    def list_versions(self, name: str) -> list[ModelVersion]:
        with self._read() as conn:
            _model_row(conn, name)
            rows = conn.execute(
                sa.select(model_versions)
                .where(model_versions.c.model_name == name)
                .order_by(model_versions.c.version)
            ).all()
            names = _alias_names(conn, name)
        return [_to_version(row, names.get(row.version, ())) for row in rows]

    def get_version(self, name: str, version: int) -> ModelVersion:
        with self._read() as conn:
            return _version(conn, _version_row(conn, name, version))

    def get_alias(self, name: str, alias: str) -> ModelVersion | None:
        """None when nothing carries the alias, including a model never registered: the
        first training run of a new model asks for a champion before any version exists."""
        with self._read() as conn:
            version = _alias_version(conn, name, alias)
            if version is None:
                return None
            return _version(conn, _version_row(conn, name, version))

    def champion(self, name: str) -> ModelVersion | None:
        return self.get_alias(name, CHAMPION)

    def audit_log(self, name: str | None = None) -> list[AuditEntry]:
        """Entries oldest first; all models when `name` is None."""
        query = sa.select(audit).order_by(audit.c.id)
        with self._read() as conn:
            if name is not None:
                _model_row(conn, name)
                query = query.where(audit.c.model_name == name)
            rows = conn.execute(query).all()
        return [_audit_entry(row) for row in rows]


# -- transaction steps ---------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _upsert_model(conn: Connection, name: str, owner: str, description: str, now: datetime) -> None:
    updated = conn.execute(
        models.update().where(models.c.name == name).values(owner=owner, description=description)
    )
    if updated.rowcount == 0:
        # A concurrent first registration may win this insert; _transact retries.
        conn.execute(
            models.insert().values(name=name, owner=owner, description=description, created_at=now)
        )


def _lock_model(conn: Connection, name: str) -> Row[Any]:
    """Serialise writers per model (row lock on PostgreSQL; SQLite already holds the db lock)."""
    row = conn.execute(sa.select(models).where(models.c.name == name).with_for_update()).first()
    if row is None:
        raise RegistryError(_no_model_message(conn, name))
    return row


def _same_run(
    conn: Connection, name: str, run_id: str, sha: str, status: VersionStatus
) -> ModelVersion | None:
    row = conn.execute(
        sa.select(model_versions)
        .where(model_versions.c.model_name == name)
        .where(model_versions.c.run_id == run_id)
    ).first()
    if row is None:
        return None
    rejected = VersionStatus.REJECTED.value
    if row.model_sha256 != sha or (row.status == rejected) != (status.value == rejected):
        raise RegistryError(
            f"run_id: run {run_id!r} already registered version {row.version} of {name!r} "
            f"(status {row.status}, model_sha256 {row.model_sha256}); one run makes one version"
        )
    return _version(conn, row)


def _next_version(conn: Connection, name: str) -> int:
    latest = conn.execute(
        sa.select(sa.func.max(model_versions.c.version)).where(model_versions.c.model_name == name)
    ).scalar_one()
    return (latest or 0) + 1


def _retire_champion(conn: Connection, name: str) -> int | None:
    """Move the alias off the champion being retired: back to the version it replaced if that
    one can still serve, else remove it. Returns the new champion, if any."""
    current = _alias_version(conn, name, CHAMPION)
    assert current is not None
    try:
        previous: int | None = _previous_champion(conn, name, current)
    except RegistryError:
        previous = None
    if previous is not None:
        status = VersionStatus(_version_row(conn, name, previous).status)
        if status in UNPROMOTABLE:
            previous = None
    if previous is None:
        conn.execute(
            aliases.delete().where(aliases.c.model_name == name).where(aliases.c.alias == CHAMPION)
        )
        return None
    _set_alias(conn, name, CHAMPION, previous, _now(), exists=True)
    _set_status(conn, name, previous, VersionStatus.CHAMPION)
    return previous


def _move_champion(
    conn: Connection,
    name: str,
    version: int,
    actor: str,
    reason: str,
    action: str,
    force: bool = False,
) -> ModelVersion:
    _lock_model(conn, name)
    row = _version_row(conn, name, version)
    status = VersionStatus(row.status)
    if status in UNPROMOTABLE and not force:
        raise RegistryError(
            f"version {version} of {name!r} is {status.value} and cannot become champion "
            "(force it with --force and a reason if you must)"
        )
    previous = _alias_version(conn, name, CHAMPION)
    if previous == version:
        raise RegistryError(f"version {version} of {name!r} is already champion")
    now = _now()
    _set_alias(conn, name, CHAMPION, version, now, exists=previous is not None)
    # Archive every other champion-status row, not only `previous`, so status and alias agree.
    conn.execute(
        model_versions.update()
        .where(model_versions.c.model_name == name)
        .where(model_versions.c.status == VersionStatus.CHAMPION.value)
        .where(model_versions.c.version != version)
        .values(status=VersionStatus.ARCHIVED.value)
    )
    _set_status(conn, name, version, VersionStatus.CHAMPION)
    details: dict[str, Any] = {"previous": previous}
    if status in UNPROMOTABLE:
        details.update(forced=True, previous_status=status.value)
    _insert_audit(
        conn,
        at=now,
        actor=actor,
        action=action,
        model_name=name,
        version=version,
        reason=reason,
        details=details,
    )
    return _version(conn, _version_row(conn, name, version))


def _set_alias(
    conn: Connection, name: str, alias: str, version: int, now: datetime, *, exists: bool
) -> None:
    if exists:
        conn.execute(
            aliases.update()
            .where(aliases.c.model_name == name)
            .where(aliases.c.alias == alias)
            .values(version=version, updated_at=now)
        )
    else:
        conn.execute(
            aliases.insert().values(model_name=name, alias=alias, version=version, updated_at=now)
        )


def _set_status(conn: Connection, name: str, version: int, status: VersionStatus) -> None:
    conn.execute(
        model_versions.update()
        .where(model_versions.c.model_name == name)
        .where(model_versions.c.version == version)
        .values(status=status.value)
    )


def _previous_champion(conn: Connection, name: str, current: int) -> int:
    """The version the current champion replaced, as its promotion's audit entry recorded."""
    row = conn.execute(
        sa.select(audit.c.details)
        .where(audit.c.model_name == name)
        .where(audit.c.version == current)
        .where(audit.c.action.in_(("promote", "rollback")))
        .order_by(audit.c.id.desc())
        .limit(1)
    ).first()
    previous = row.details.get("previous") if row is not None else None
    if previous is None:
        raise RegistryError(
            f"model {name!r}: champion version {current} replaced no earlier champion; "
            "there is nothing to roll back to"
        )
    return int(previous)


def _insert_audit(
    conn: Connection,
    *,
    at: datetime,
    actor: str,
    action: str,
    model_name: str,
    version: int | None,
    reason: str,
    details: dict[str, Any],
) -> int:
    result = conn.execute(
        audit.insert().values(
            at=at,
            actor=actor,
            action=action,
            model_name=model_name,
            version=version,
            reason=reason,
            details=details,
        )
    )
    return int(result.inserted_primary_key[0])


# -- lookups -------------------------------------------------------------------------------


def _model_row(conn: Connection, name: str) -> Row[Any]:
    row = conn.execute(sa.select(models).where(models.c.name == name)).first()
    if row is None:
        raise RegistryError(_no_model_message(conn, name))
    return row


def _no_model_message(conn: Connection, name: str) -> str:
    known = conn.execute(sa.select(models.c.name).order_by(models.c.name)).scalars().all()
    listing = ", ".join(known) if known else "none registered yet"
    return f"no model named {name!r} in the registry (known models: {listing})"


def _version_row(conn: Connection, name: str, version: int, role: str = "version") -> Row[Any]:
    _model_row(conn, name)
    row = conn.execute(
        sa.select(model_versions)
        .where(model_versions.c.model_name == name)
        .where(model_versions.c.version == version)
    ).first()
    if row is None:
        existing = (
            conn.execute(
                sa.select(model_versions.c.version)
                .where(model_versions.c.model_name == name)
                .order_by(model_versions.c.version)
            )
            .scalars()
            .all()
        )
        listing = ", ".join(map(str, existing)) if existing else "none"
        raise RegistryError(
            f"model {name!r} has no {role} {version} (versions that exist: {listing})"
        )
    return row


def _alias_version(conn: Connection, name: str, alias: str) -> int | None:
    return conn.execute(
        sa.select(aliases.c.version)
        .where(aliases.c.model_name == name)
        .where(aliases.c.alias == alias)
    ).scalar_one_or_none()


def _alias_names(conn: Connection, name: str) -> dict[int, tuple[str, ...]]:
    rows = conn.execute(
        sa.select(aliases.c.version, aliases.c.alias)
        .where(aliases.c.model_name == name)
        .order_by(aliases.c.alias)
    ).all()
    names: dict[int, tuple[str, ...]] = {}
    for version, alias in rows:
        names[version] = (*names.get(version, ()), alias)
    return names


def _model(row: Row[Any]) -> ModelRecord:
    return ModelRecord(
        name=row.name, owner=row.owner, description=row.description, created_at=row.created_at
    )


def _version(conn: Connection, row: Row[Any]) -> ModelVersion:
    return _to_version(row, _alias_names(conn, row.model_name).get(row.version, ()))


def _to_version(row: Row[Any], names: tuple[str, ...]) -> ModelVersion:
    return ModelVersion(
        model_name=row.model_name,
        version=row.version,
        status=VersionStatus(row.status),
        run_id=row.run_id,
        artifact_uri=row.artifact_uri,
        model_file=row.model_file,
        model_sha256=row.model_sha256,
        data_fingerprint=row.data_fingerprint,
        config_hash=row.config_hash,
        code_version=row.code_version,
        package_versions=dict(row.package_versions),
        parent_version=row.parent_version,
        metrics=dict(row.metrics),
        gate=dict(row.gate),
        created_at=row.created_at,
        created_by=row.created_by,
        aliases=names,
    )


def _audit_entry(row: Row[Any]) -> AuditEntry:
    return AuditEntry(
        id=row.id,
        at=row.at,
        actor=row.actor,
        action=row.action,
        model_name=row.model_name,
        version=row.version,
        reason=row.reason,
        details=dict(row.details),
    )

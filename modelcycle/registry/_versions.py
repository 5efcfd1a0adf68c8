"""The model registry: versions, the champion alias and an append-only audit log.

SQLAlchemy Core only, so one code path serves SQLite (the default) and PostgreSQL. Every move
(register, promote, rollback, retire) is one transaction that also writes its audit entry:
either all of it is recorded or none of it.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, Row
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from modelcycle.errors import RegistryError

CHAMPION = "champion"
_WRITE = "modelcycle_write"  # execution option: SQLite takes the write lock at BEGIN
_ATTEMPTS = 5
_BUSY_TIMEOUT_S = 30
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

T = TypeVar("T")


class VersionStatus(StrEnum):
    CANDIDATE = "candidate"
    CHAMPION = "champion"
    ARCHIVED = "archived"
    REJECTED = "rejected"
    RETIRED = "retired"


_REGISTRABLE = (VersionStatus.CANDIDATE, VersionStatus.REJECTED)
_UNPROMOTABLE = (VersionStatus.REJECTED, VersionStatus.RETIRED)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, also on SQLite, which drops the zone on disk."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the registry stores UTC only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = sa.MetaData()

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


@dataclass(frozen=True)
class ModelRecord:
    name: str
    owner: str
    description: str
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "owner": self.owner,
            "description": self.description,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True)
class ModelVersion:
    model_name: str
    version: int
    status: VersionStatus
    run_id: str
    artifact_uri: str
    model_file: str
    model_sha256: str
    data_fingerprint: str
    config_hash: str
    code_version: str
    package_versions: dict[str, Any]
    parent_version: int | None
    metrics: dict[str, Any]
    gate: dict[str, Any]
    created_at: datetime
    created_by: str
    aliases: tuple[str, ...] = field(default=())

    @property
    def model_location(self) -> str:
        """Where the model file is: the run folder (path or fsspec URL) plus the file name."""
        return f"{self.artifact_uri.rstrip('/')}/{self.model_file}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "version": self.version,
            "status": self.status.value,
            "aliases": list(self.aliases),
            "run_id": self.run_id,
            "artifact_uri": self.artifact_uri,
            "model_file": self.model_file,
            "model_location": self.model_location,
            "model_sha256": self.model_sha256,
            "data_fingerprint": self.data_fingerprint,
            "config_hash": self.config_hash,
            "code_version": self.code_version,
            "package_versions": dict(self.package_versions),
            "parent_version": self.parent_version,
            "metrics": dict(self.metrics),
            "gate": dict(self.gate),
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
        }


@dataclass(frozen=True)
class Registration:
    """What a training run hands the registry: validated here, before any transaction starts."""

    model_name: str
    owner: str
    description: str
    run_id: str
    artifact_uri: str
    model_file: str
    model_sha256: str
    data_fingerprint: str
    config_hash: str
    code_version: str
    package_versions: dict[str, Any]
    parent_version: int | None
    metrics: dict[str, Any]
    gate: dict[str, Any]

    def __post_init__(self) -> None:
        _check_name("model_name", self.model_name)
        for field_name in ("owner", "run_id", "artifact_uri", "data_fingerprint", "config_hash"):
            _check_text(field_name, getattr(self, field_name))
        _check_text("code_version", self.code_version)
        if not isinstance(self.description, str):
            raise RegistryError(f"description: expected a string, got {self.description!r}")
        _check_file_name(self.model_file)
        object.__setattr__(self, "model_sha256", _check_sha256(self.model_sha256))
        if self.parent_version is not None:
            _check_version_number("parent_version", self.parent_version)
        for field_name in ("package_versions", "metrics", "gate"):
            object.__setattr__(self, field_name, _check_json(field_name, getattr(self, field_name)))


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    model_name: str
    version: int | None
    reason: str
    details: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "model_name": self.model_name,
            "version": self.version,
            "reason": self.reason,
            "details": dict(self.details),
        }


class SQLStore:
    """Tables on any SQLAlchemy URL: connects on first use, creates its tables on first use, and
    turns database failures into one-line `RegistryError`s that name the URL.

    Shared by the registry and the incident log, which live in the same database.
    """

    tables: ClassVar[sa.MetaData]

    def __init__(self, url: str) -> None:
        self.url = url
        self._parsed = _parse_url(url)
        self._engine: Engine | None = None
        self._schema_ready = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._parsed.render_as_string(hide_password=True)!r})"

    # -- connection and schema -------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            try:
                self._engine = _make_engine(self._parsed)
            except (ImportError, NoSuchModuleError) as exc:
                raise RegistryError(
                    f"{self!r}: no SQLAlchemy driver for this URL ({exc}); install it first"
                ) from exc
        return self._engine

    def close(self) -> None:
        """Release pooled connections (tests and short-lived CLI processes)."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
            self._schema_ready = False

    def create_schema(self) -> None:
        """Create missing tables; safe to call from many processes at once."""
        try:
            with self._write() as conn:
                self.tables.create_all(conn, checkfirst=True)
        except DBAPIError as exc:
            # Another process may have created them between our check and CREATE (PostgreSQL).
            if not self._tables_exist():
                raise RegistryError(f"{self!r}: cannot create its tables: {exc}") from exc
        self._schema_ready = True

    def _tables_exist(self) -> bool:
        present = set(sa.inspect(self.engine).get_table_names())
        return set(self.tables.tables) <= present

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        self._ensure_schema()
        with self._unreachable(), self.engine.connect() as conn:
            yield conn

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One transaction; on SQLite it holds the write lock from BEGIN, so writers queue."""
        with self._unreachable(), self.engine.execution_options(**{_WRITE: True}).begin() as conn:
            yield conn

    @contextmanager
    def _unreachable(self) -> Iterator[None]:
        """Database down, locked past the timeout, or not a registry: one line, with the URL."""
        try:
            yield
        except OperationalError as exc:
            raise RegistryError(f"{self!r}: database error: {exc.orig}") from exc

    def _ensure_schema(self) -> None:
        if not self._schema_ready:
            self.create_schema()


class Registry(SQLStore):
    """Registry on any SQLAlchemy URL; connects on first use, not on construction."""

    tables = metadata

    def _transact(self, work: Callable[[Connection], T]) -> T:
        """Run `work` in one write transaction, retrying when a concurrent writer won a race."""
        self._ensure_schema()
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                with self._write() as conn:
                    return work(conn)
            except SAIntegrityError as exc:
                if attempt == _ATTEMPTS:
                    raise RegistryError(
                        f"registry write refused after {_ATTEMPTS} attempts: {exc.orig}"
                    ) from exc
        raise AssertionError("unreachable")

    # -- writes ----------------------------------------------------------------------------

    def register_version(
        self, registration: Registration, *, status: VersionStatus, actor: str, reason: str
    ) -> ModelVersion:
        """Record a new version numbered max+1; a gate failure is recorded too, as `rejected`.

        The model row is created or its owner/description refreshed from the config, in the
        same transaction as the version and its audit entry. Registering the same run again
        with the same file and status returns the version already recorded (task retries).
        """
        status = _registrable_status(status)
        _check_text("actor", actor)
        _check_text("reason", reason)
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
        _check_version_number("version", version)
        _check_text("actor", actor)
        _check_text("reason", reason)
        return self._transact(
            lambda conn: _move_champion(conn, model_name, version, actor, reason, "promote", force)
        )

    def rollback(self, model_name: str, *, actor: str, reason: str) -> ModelVersion:
        """Give the champion alias back to the version the current champion replaced.

        That version comes from the audit entry that made the current champion, so a second
        rollback undoes the first. Refused if that version has been retired or rejected since.
        """
        _check_text("actor", actor)
        _check_text("reason", reason)

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
        _check_version_number("version", version)
        _check_text("actor", actor)
        _check_text("reason", reason)

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
        _check_text("actor", actor)
        _check_text("action", action)
        _check_text("reason", reason)
        payload = _check_json("details", dict(details or {}))

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


# -- engine --------------------------------------------------------------------------------


def _parse_url(url: str) -> URL:
    try:
        return sa.make_url(url)
    except ArgumentError as exc:
        raise RegistryError(
            f"registry URL {url!r} is not a SQLAlchemy URL "
            "(expected e.g. sqlite:///path/registry.db or postgresql+psycopg://host/db)"
        ) from exc


def _make_engine(url: URL) -> Engine:
    if url.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True)
    database = url.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": _BUSY_TIMEOUT_S})
    _sqlite_events(engine)
    return engine


def _sqlite_events(engine: Engine) -> None:
    """Foreign keys on, wait for locks, and BEGIN IMMEDIATE for writes.

    pysqlite's own deferred BEGIN lets two writers both read max(version) and then deadlock on
    the lock upgrade (SQLITE_BUSY without waiting); taking the write lock at BEGIN makes
    concurrent writers queue behind the busy timeout instead.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_S * 1000}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


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


def _fault_point(where: str) -> None:
    """Fault injection for the crash tests: MODELCYCLE_FAULT_SLEEP=<where>:<seconds> sleeps
    here, inside the open transaction, after announcing it on stderr."""
    spec = os.environ.get("MODELCYCLE_FAULT_SLEEP", "")
    point, _, seconds = spec.partition(":")
    if point == where and seconds:
        print(f"modelcycle-fault: inside {where}", file=sys.stderr, flush=True)
        time.sleep(float(seconds))


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
        if status in _UNPROMOTABLE:
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
    if status in _UNPROMOTABLE and not force:
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
    _fault_point(action)
    details: dict[str, Any] = {"previous": previous}
    if status in _UNPROMOTABLE:
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


# -- input checks --------------------------------------------------------------------------


def _registrable_status(status: VersionStatus | str) -> VersionStatus:
    try:
        value = VersionStatus(status)
    except ValueError:
        value = None
    if value not in _REGISTRABLE:
        allowed = " or ".join(s.value for s in _REGISTRABLE)
        raise RegistryError(f"status: a new version must be {allowed}, got {status!r}")
    return value


def _check_name(field_name: str, value: object) -> None:
    if not isinstance(value, str) or not _NAME.match(value):
        raise RegistryError(
            f"{field_name}: expected 1-128 letters, digits, '.', '_' or '-' starting with a "
            f"letter or digit, got {value!r}"
        )


def _check_text(field_name: str, value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise RegistryError(f"{field_name}: expected a non-empty string, got {value!r}")


def _check_file_name(value: object) -> None:
    _check_text("model_file", value)
    assert isinstance(value, str)
    if "/" in value or "\\" in value or value in (".", ".."):
        raise RegistryError(
            f"model_file: expected a file name inside the run folder, got {value!r}"
        )


def _check_sha256(value: object) -> str:
    if not isinstance(value, str) or not _SHA256.match(value.lower()):
        raise RegistryError(f"model_sha256: expected 64 hexadecimal characters, got {value!r}")
    return value.lower()


def _check_version_number(field_name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RegistryError(f"{field_name}: expected a version number >= 1, got {value!r}")


def _check_json(field_name: str, value: object) -> dict[str, Any]:
    """Strict JSON (no NaN): PostgreSQL rejects what SQLite would quietly store."""
    if not isinstance(value, dict):
        raise RegistryError(f"{field_name}: expected a mapping, got {type(value).__name__}")
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise RegistryError(f"{field_name}: not storable as JSON ({exc})") from exc

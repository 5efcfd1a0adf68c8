"""The SQL plumbing the registry and the incident log share: one database, any SQLAlchemy URL.

SQLAlchemy Core only, so one code path serves SQLite (the default) and PostgreSQL. Each store
declares its tables on the shared `metadata` and creates only its own, on first use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from modelcycle.errors import RegistryError

_WRITE = "modelcycle_write"  # execution option: SQLite takes the write lock at BEGIN
ATTEMPTS = 5
_BUSY_TIMEOUT_S = 30

T = TypeVar("T")

metadata = sa.MetaData()


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


class SQLStore:
    """Tables on any SQLAlchemy URL: connects on first use, creates its tables on first use, and
    turns database failures into one-line `RegistryError`s that name the URL.

    Shared by the registry and the incident log, which live in the same database; each creates
    only its own `tables`, so a registry file never gains tables it does not use.
    """

    tables: ClassVar[Sequence[sa.Table]]
    refused: ClassVar[str]  # how a write that keeps losing races is reported

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
        """Create missing tables, then upgrade what an older release made; safe to call from
        many processes at once."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                with self._write() as conn:
                    metadata.create_all(conn, tables=list(self.tables), checkfirst=True)
                    self._upgrade(conn)
                break
            except DBAPIError as exc:
                # Another process may have created them between our check and CREATE
                # (PostgreSQL); the next attempt finds them and upgrades nothing twice.
                if attempt == ATTEMPTS:
                    raise RegistryError(f"{self!r}: cannot create its tables: {exc}") from exc
        self._schema_ready = True

    def _upgrade(self, conn: Connection) -> None:
        """Bring tables made by an older release up to date, inside the schema transaction
        (which holds the write lock, so one process upgrades and the others find it done)."""

    def _transact(self, work: Callable[[Connection], T]) -> T:
        """Run `work` in one write transaction, retrying when a concurrent writer won a race
        (a unique key taken between our read and our insert)."""
        self._ensure_schema()
        for attempt in range(1, ATTEMPTS + 1):
            try:
                with self._write() as conn:
                    return work(conn)
            except SAIntegrityError as exc:
                if attempt == ATTEMPTS:
                    raise RegistryError(f"{self.refused}: {exc.orig}") from exc
        raise AssertionError("unreachable")

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

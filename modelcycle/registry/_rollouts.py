"""Online experiments and deprecation notices, in the registry's database.

An experiment puts a challenger beside the champion: in `shadow` it scores every request off
the response path, in `canary` it answers a share of the traffic. At most one experiment runs
per model (a partial unique index holds that against racing writers). Each start, look and end
is one transaction with its audit entry in the model's hash chain, so the audit log tells the
whole story of an experiment with its evidence. A deprecation notice gives a version a sunset
date (and optionally a successor); the service announces it on pinned routes and answers 410
after the date.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from modelcycle.errors import IntegrityError, RegistryError
from modelcycle.registry._records import (
    UNPROMOTABLE,
    AuditEntry,
    ModelVersion,
    VersionStatus,
    check_json,
    check_text,
    check_version_number,
)
from modelcycle.registry._sql import SQLStore, UTCDateTime, metadata
from modelcycle.registry._verify import version_problems
from modelcycle.registry._versions import (
    CHAMPION,
    Registry,
    _alias_version,
    _insert_audit,
    _lock_model,
    _version,
    _version_row,
)
from modelcycle.utils import to_json_dict


class ExperimentMode(StrEnum):
    SHADOW = "shadow"
    CANARY = "canary"


class ExperimentStatus(StrEnum):
    RUNNING = "running"
    PROMOTED = "promoted"
    STOPPED = "stopped"
    REPLACED = "replaced"  # a new experiment (say shadow -> canary) took its place


_MODES = ", ".join(f"'{m.value}'" for m in ExperimentMode)
_STATUSES = ", ".join(f"'{s.value}'" for s in ExperimentStatus)

experiments = sa.Table(
    "experiments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model_name", sa.String(128), nullable=False, index=True),
    sa.Column("challenger", sa.Integer, nullable=False),
    sa.Column("champion", sa.Integer, nullable=False),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("share", sa.Float, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("looks", sa.Integer, nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("started_by", sa.String(256), nullable=False),
    sa.Column("ended_at", UTCDateTime, nullable=True),
    sa.Column("last_evidence", sa.JSON, nullable=False),
    sa.CheckConstraint(f"mode IN ({_MODES})", name="ck_experiments_mode"),
    sa.CheckConstraint(f"status IN ({_STATUSES})", name="ck_experiments_status"),
    sa.CheckConstraint("share >= 0 AND share < 1", name="ck_experiments_share"),
    sa.Index(
        "uq_experiments_running",
        "model_name",
        unique=True,
        sqlite_where=sa.text("status = 'running'"),
        postgresql_where=sa.text("status = 'running'"),
    ),
)

deprecations = sa.Table(
    "deprecations",
    metadata,
    sa.Column("model_name", sa.String(128), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("sunset", UTCDateTime, nullable=False),
    sa.Column("successor", sa.Integer, nullable=True),
    sa.Column("announced_at", UTCDateTime, nullable=False),
    sa.Column("announced_by", sa.String(256), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.PrimaryKeyConstraint("model_name", "version", name="pk_deprecations"),
)


@dataclass(frozen=True)
class Experiment:
    id: int
    model_name: str
    challenger: int
    champion: int
    mode: ExperimentMode
    share: float
    status: ExperimentStatus
    looks: int
    started_at: datetime
    started_by: str
    ended_at: datetime | None
    last_evidence: dict[str, Any]

    @property
    def paired(self) -> bool:
        """Shadow rows are scored by both versions, so the comparison is row by row."""
        return self.mode is ExperimentMode.SHADOW

    def to_dict(self) -> dict[str, Any]:
        return to_json_dict(self)


@dataclass(frozen=True)
class Deprecation:
    model_name: str
    version: int
    sunset: datetime
    successor: int | None
    announced_at: datetime
    announced_by: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return to_json_dict(self)


@dataclass(frozen=True)
class ExperimentMove:
    """An experiment as a transaction left it, and the audit entry that transaction wrote."""

    experiment: Experiment
    entry: AuditEntry


class Rollouts(SQLStore):
    """Experiments and deprecations on the registry's URL; the registry's own tables (and its
    audit chain) are created first, since every write here appends to that chain."""

    tables = (experiments, deprecations)
    refused = "experiment write refused"  # another experiment started at the same moment

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.registry = Registry(url)

    def create_schema(self) -> None:
        self.registry.create_schema()
        super().create_schema()

    def close(self) -> None:
        self.registry.close()
        super().close()

    # -- experiments -------------------------------------------------------------------------

    def start(
        self,
        model_name: str,
        version: int,
        *,
        mode: ExperimentMode,
        share: float = 0.0,
        actor: str,
        reason: str,
    ) -> ExperimentMove:
        """Start an experiment with `version` as challenger; one that is already running for
        the model is ended as `replaced` in the same transaction (shadow first, then canary).

        Refused before anything is written: unknown version, a rejected or retired one (the
        gate never passed it, or it was taken out of use), the champion itself, no champion
        to compare with, files that no longer verify, a canary share outside (0, 1).
        """
        check_version_number("version", version)
        check_text("actor", actor)
        check_text("reason", reason)
        mode = ExperimentMode(mode)
        share = _check_share(mode, share)
        target = self.registry.get_version(model_name, version)
        _check_challenger(target)
        problems = version_problems(target)
        if problems:
            raise IntegrityError(
                f"refusing {model_name} v{version} as a challenger: its files are not the files "
                f"that were registered: {problems[0]}"
            )

        def work(conn: Connection) -> ExperimentMove:
            _lock_model(conn, model_name)
            row = _version(conn, _version_row(conn, model_name, version))
            _check_challenger(row)
            champion = _alias_version(conn, model_name, CHAMPION)
            if champion is None:
                raise RegistryError(
                    f"model {model_name!r} has no champion to compare v{version} with"
                )
            now = _now()
            replaced = _running_row(conn, model_name)
            if replaced is not None:
                _end(conn, replaced.id, ExperimentStatus.REPLACED, now)
            values = {
                "model_name": model_name,
                "challenger": version,
                "champion": champion,
                "mode": mode.value,
                "share": share,
                "status": ExperimentStatus.RUNNING.value,
                "looks": 0,
                "started_at": now,
                "started_by": actor,
                "ended_at": None,
                "last_evidence": {},
            }
            new_id = int(
                conn.execute(experiments.insert().values(**values)).inserted_primary_key[0]
            )
            details: dict[str, Any] = {
                "experiment": new_id,
                "mode": mode.value,
                "champion": champion,
            }
            if mode is ExperimentMode.CANARY:
                details["share"] = share
            if replaced is not None:
                details["replaced"] = {"experiment": replaced.id, "mode": replaced.mode}
            entry = _insert_audit(
                conn,
                at=now,
                actor=actor,
                action=mode.value,
                model_name=model_name,
                version=version,
                reason=reason,
                details=details,
            )
            return ExperimentMove(_experiment(_get_row(conn, new_id)), entry)

        return self._transact(work)

    def record_look(
        self, experiment_id: int, *, evidence: dict[str, Any], actor: str, reason: str
    ) -> ExperimentMove:
        """One more look at a running experiment, its evidence kept and audited."""
        payload = check_json("evidence", evidence)
        check_text("actor", actor)
        check_text("reason", reason)

        def work(conn: Connection) -> ExperimentMove:
            row = _running(conn, experiment_id)
            looks = row.looks + 1
            conn.execute(
                experiments.update()
                .where(experiments.c.id == experiment_id)
                .values(looks=looks, last_evidence={**payload, "look": looks})
            )
            entry = _insert_audit(
                conn,
                at=_now(),
                actor=actor,
                action="experiment-look",
                model_name=row.model_name,
                version=row.challenger,
                reason=reason,
                details={"experiment": experiment_id, "look": looks, **payload},
            )
            return ExperimentMove(_experiment(_get_row(conn, experiment_id)), entry)

        return self._transact(work)

    def finish(
        self,
        experiment_id: int,
        outcome: ExperimentStatus,
        *,
        evidence: dict[str, Any],
        actor: str,
        reason: str,
    ) -> ExperimentMove:
        """End a running experiment: `stopped` (the champion keeps all traffic) or `promoted`
        (recorded once the promotion flow moved the alias)."""
        outcome = ExperimentStatus(outcome)
        if outcome not in (ExperimentStatus.STOPPED, ExperimentStatus.PROMOTED):
            raise RegistryError(f"outcome: expected 'stopped' or 'promoted', got {outcome.value!r}")
        payload = check_json("evidence", evidence)
        check_text("actor", actor)
        check_text("reason", reason)

        def work(conn: Connection) -> ExperimentMove:
            row = _running(conn, experiment_id)
            now = _now()
            conn.execute(
                experiments.update()
                .where(experiments.c.id == experiment_id)
                .values(last_evidence=payload)
            )
            _end(conn, experiment_id, outcome, now)
            entry = _insert_audit(
                conn,
                at=now,
                actor=actor,
                action=f"experiment-{'stop' if outcome is ExperimentStatus.STOPPED else 'promote'}",
                model_name=row.model_name,
                version=row.challenger,
                reason=reason,
                details={"experiment": experiment_id, "looks": row.looks, **payload},
            )
            return ExperimentMove(_experiment(_get_row(conn, experiment_id)), entry)

        return self._transact(work)

    def running(self, model_name: str) -> Experiment | None:
        with self._read() as conn:
            row = _running_row(conn, model_name)
            return None if row is None else _experiment(row)

    def get(self, experiment_id: int) -> Experiment:
        with self._read() as conn:
            return _experiment(_get_row(conn, experiment_id))

    def history(self, model_name: str) -> list[Experiment]:
        with self._read() as conn:
            rows = conn.execute(
                sa.select(experiments)
                .where(experiments.c.model_name == model_name)
                .order_by(experiments.c.id)
            ).all()
        return [_experiment(r) for r in rows]

    # -- deprecations ----------------------------------------------------------------------

    def deprecate(
        self,
        model_name: str,
        version: int,
        *,
        sunset: datetime,
        successor: int | None,
        actor: str,
        reason: str,
    ) -> tuple[Deprecation, AuditEntry]:
        """Announce that `version` stops answering at `sunset`; announcing again moves the
        date or successor (each announcement audited)."""
        check_version_number("version", version)
        if successor is not None:
            check_version_number("successor", successor)
        check_text("actor", actor)
        check_text("reason", reason)
        if sunset.tzinfo is None:
            raise RegistryError("sunset: expected a time with a UTC offset")
        sunset = sunset.astimezone(UTC)
        now = _now()
        if sunset <= now:
            raise RegistryError(
                f"sunset: {sunset.isoformat()} is in the past; a deprecation announces a date "
                "still to come (retire the version to stop it now)"
            )
        if successor == version:
            raise RegistryError(f"successor: v{version} cannot succeed itself")

        def work(conn: Connection) -> tuple[Deprecation, AuditEntry]:
            _lock_model(conn, model_name)
            row = _version(conn, _version_row(conn, model_name, version))
            if row.status is VersionStatus.RETIRED:
                raise RegistryError(f"version {version} of {model_name!r} is already retired")
            if successor is not None:
                after = _version(conn, _version_row(conn, model_name, successor, "successor"))
                if after.status in UNPROMOTABLE:
                    raise RegistryError(
                        f"successor: version {successor} of {model_name!r} is "
                        f"{after.status.value} and cannot take over"
                    )
            values = {
                "sunset": sunset,
                "successor": successor,
                "announced_at": now,
                "announced_by": actor,
                "reason": reason,
            }
            key = (deprecations.c.model_name == model_name) & (deprecations.c.version == version)
            if conn.execute(deprecations.update().where(key).values(**values)).rowcount == 0:
                conn.execute(
                    deprecations.insert().values(model_name=model_name, version=version, **values)
                )
            entry = _insert_audit(
                conn,
                at=now,
                actor=actor,
                action="deprecate",
                model_name=model_name,
                version=version,
                reason=reason,
                details={"sunset": sunset.isoformat(), "successor": successor},
            )
            stored = conn.execute(sa.select(deprecations).where(key)).one()
            return _deprecation(stored), entry

        return self._transact(work)

    def deprecations(self, model_name: str) -> dict[int, Deprecation]:
        with self._read() as conn:
            rows = conn.execute(
                sa.select(deprecations).where(deprecations.c.model_name == model_name)
            ).all()
        return {row.version: _deprecation(row) for row in rows}


# -- helpers ---------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _check_share(mode: ExperimentMode, share: float) -> float:
    if mode is ExperimentMode.SHADOW:
        return 0.0
    if not isinstance(share, int | float) or isinstance(share, bool) or not math.isfinite(share):
        raise RegistryError(f"share: expected a number in (0, 1), got {share!r}")
    if not 0 < share < 1:
        raise RegistryError(
            f"share: expected a number in (0, 1) (the challenger's part of the traffic), "
            f"got {share}"
        )
    return float(share)


def _check_challenger(record: ModelVersion) -> None:
    name, version = record.model_name, record.version
    if record.status is VersionStatus.REJECTED:
        raise RegistryError(
            f"version {version} of {name!r} did not pass the gate (rejected); only a version "
            "that passed can meet live traffic"
        )
    if record.status is VersionStatus.RETIRED:
        raise RegistryError(f"version {version} of {name!r} is retired")
    if CHAMPION in record.aliases or record.status is VersionStatus.CHAMPION:
        raise RegistryError(
            f"version {version} of {name!r} is the champion; a challenger must be another version"
        )


def _running_row(conn: Connection, model_name: str) -> Row[Any] | None:
    return conn.execute(
        sa.select(experiments)
        .where(experiments.c.model_name == model_name)
        .where(experiments.c.status == ExperimentStatus.RUNNING.value)
    ).first()


def _get_row(conn: Connection, experiment_id: int) -> Row[Any]:
    row = conn.execute(sa.select(experiments).where(experiments.c.id == experiment_id)).first()
    if row is None:
        raise RegistryError(f"experiment {experiment_id}: no such experiment")
    return row


def _running(conn: Connection, experiment_id: int) -> Row[Any]:
    row = _get_row(conn, experiment_id)
    _lock_model(conn, row.model_name)
    row = _get_row(conn, experiment_id)
    if row.status != ExperimentStatus.RUNNING.value:
        raise RegistryError(
            f"experiment {experiment_id} of {row.model_name!r} is {row.status}, not running"
        )
    return row


def _end(conn: Connection, experiment_id: int, status: ExperimentStatus, now: datetime) -> None:
    conn.execute(
        experiments.update()
        .where(experiments.c.id == experiment_id)
        .values(status=status.value, ended_at=now)
    )


def _experiment(row: Row[Any]) -> Experiment:
    return Experiment(
        id=row.id,
        model_name=row.model_name,
        challenger=row.challenger,
        champion=row.champion,
        mode=ExperimentMode(row.mode),
        share=float(row.share),
        status=ExperimentStatus(row.status),
        looks=row.looks,
        started_at=row.started_at,
        started_by=row.started_by,
        ended_at=row.ended_at,
        last_evidence=dict(row.last_evidence or {}),
    )


def _deprecation(row: Row[Any]) -> Deprecation:
    return Deprecation(
        model_name=row.model_name,
        version=row.version,
        sunset=row.sunset,
        successor=row.successor,
        announced_at=row.announced_at,
        announced_by=row.announced_by,
        reason=row.reason,
    )

"""The model registry: versions, the champion alias and an append-only audit log.

Every move (register, promote, rollback, retire) is one transaction that also writes its audit
entry: either all of it is recorded or none of it. The champion alias only moves to a version
whose files still verify against what the registry recorded, and the audit log is a hash chain
the database refuses to UPDATE or DELETE (SQLite and PostgreSQL triggers).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from modelcycle.errors import IntegrityError, RegistryError
from modelcycle.registry._audit import (
    CHAIN_START,
    UPGRADE_ACTOR,
    ChainReport,
    entry_hash,
    genesis,
    legacy_seal,
    walk_chain,
)
from modelcycle.registry._records import (
    UNPROMOTABLE,
    AuditEntry,
    ModelRecord,
    ModelVersion,
    Move,
    Registration,
    VersionStatus,
    check_json,
    check_text,
    check_version_number,
    registrable_status,
)
from modelcycle.registry._sql import ATTEMPTS, SQLStore, UTCDateTime, metadata
from modelcycle.registry._verify import stored_manifest_sha256, version_problems

logger = logging.getLogger(__name__)

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
    sa.Column("manifest_sha256", sa.String(64), nullable=True),
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
    # The hash chain (modelcycle.registry._audit); NULL only on entries older than the chain.
    sa.Column("seq", sa.Integer, nullable=True),
    sa.Column("prev_hash", sa.String(64), nullable=True),
    sa.Column("entry_hash", sa.String(64), nullable=True),
)
# One entry per place in a model's chain: two concurrent writers cannot fork it.
audit_seq = sa.Index("uq_audit_log_model_seq", audit.c.model_name, audit.c.seq, unique=True)

_REFUSE = "audit_log is append-only"
_SQLITE_GUARDS = {
    f"audit_log_no_{op.lower()}": (
        f"CREATE TRIGGER audit_log_no_{op.lower()} BEFORE {op} ON audit_log "
        f"BEGIN SELECT RAISE(ABORT, '{_REFUSE}: {op} refused'); END"
    )
    for op in ("UPDATE", "DELETE")
}
_PG_FUNCTION = f"""
CREATE OR REPLACE FUNCTION modelcycle_audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '{_REFUSE}: % refused', TG_OP;
END
$$"""
_PG_GUARDS = {
    "audit_log_no_change": "CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON "
    "audit_log FOR EACH ROW EXECUTE FUNCTION modelcycle_audit_log_append_only()",
    "audit_log_no_truncate": "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON "
    "audit_log FOR EACH STATEMENT EXECUTE FUNCTION modelcycle_audit_log_append_only()",
}

SKIPPED_PROMOTION = "promotion-skipped"


class _ChampionMoved(Exception):
    """Inside a transaction: the champion is not the one the caller checked files against."""


class Registry(SQLStore):
    """Registry on any SQLAlchemy URL; connects on first use, not on construction."""

    tables = (models, model_versions, aliases, audit)
    refused = f"registry write refused after {ATTEMPTS} attempts"
    # Set when this process found the append-only triggers missing and put them back.
    guards_restored = False

    # -- schema upgrade --------------------------------------------------------------------

    def _upgrade(self, conn: Connection) -> None:
        """Registries made before manifests were anchored and the audit log chained gain the
        columns, record what they can, start each model's chain with an entry that says so,
        and (always) get the append-only triggers back if they are missing."""
        inspector = sa.inspect(conn)
        version_columns = {c["name"] for c in inspector.get_columns("model_versions")}
        audit_columns = {c["name"] for c in inspector.get_columns("audit_log")}
        anchored: dict[str, list[int]] = {}
        missing: dict[str, list[int]] = {}
        if "manifest_sha256" not in version_columns:
            conn.execute(
                sa.text("ALTER TABLE model_versions ADD COLUMN manifest_sha256 VARCHAR(64)")
            )
            anchored, missing = _anchor_manifests(conn)
        upgraded = "seq" not in audit_columns
        if upgraded:
            conn.execute(sa.text("ALTER TABLE audit_log ADD COLUMN seq INTEGER"))
            conn.execute(sa.text("ALTER TABLE audit_log ADD COLUMN prev_hash VARCHAR(64)"))
            conn.execute(sa.text("ALTER TABLE audit_log ADD COLUMN entry_hash VARCHAR(64)"))
            audit_seq.create(conn)
            _start_chains(conn, anchored, missing)
        if _install_guards(conn) and not upgraded and _has_entries(conn):
            self.guards_restored = True
            logger.warning(
                "%r: the audit log's append-only triggers were missing and were restored; "
                "run `modelcycle audit verify` to check nothing was changed meanwhile",
                self,
            )

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
            "manifest_sha256": r.manifest_sha256,
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
                details={
                    "run_id": run_id,
                    "model_sha256": sha,
                    "manifest_sha256": r.manifest_sha256,
                    "parent_version": parent_version,
                },
            )
            return _version(conn, _version_row(conn, model_name, version))

        return self._transact(work)

    def promote(
        self, model_name: str, version: int, *, actor: str, reason: str, force: bool = False
    ) -> Move:
        """Make `version` the champion; the previous champion becomes `archived`.

        Refused, with nothing changed, for unknown versions, for the version that already is
        champion, for rejected or retired versions unless `force` (the audit entry then
        records that it was forced and what the status was), and, whatever `force` says, for
        a version whose files are not the files that were registered.
        """
        check_version_number("version", version)
        check_text("actor", actor)
        check_text("reason", reason)
        target = self._promotable(model_name, version, force)
        return self._transact(
            lambda conn: _move_champion(
                conn, target, actor, reason, "promote", force=force, expected=_ANY
            )
        )

    def promote_judged(
        self, model_name: str, version: int, *, judged_against: int | None, actor: str, reason: str
    ) -> Move:
        """Promote a training run's candidate only if the champion is still the one its gate
        judged it against (`judged_against`, None for "no champion"): compare and swap inside
        the transaction, so two runs finishing together cannot both win.

        When the champion changed meanwhile the candidate stays registered but not promoted,
        and that is the audit entry this transaction writes (`promotion-skipped`, with both
        versions): `Move.promoted` is then False.
        """
        check_version_number("version", version)
        check_text("actor", actor)
        check_text("reason", reason)
        target = self._promotable(model_name, version, force=False)

        def work(conn: Connection) -> Move:
            try:
                return _move_champion(
                    conn, target, actor, reason, "promote", expected=judged_against
                )
            except _ChampionMoved as moved:
                return _skip_promotion(conn, target, actor, judged_against, moved.args[0])

        return self._transact(work)

    def rollback(self, model_name: str, *, actor: str, reason: str) -> Move:
        """Give the champion alias back to the version the current champion replaced, or, if
        that one is retired, rejected or its files no longer verify, to the newest earlier
        champion that still can serve (the audit entry lists what was skipped and why).

        The history comes from the audit entries that made each champion, so a second
        rollback undoes the first. Refused when no earlier champion can serve.
        """
        check_text("actor", actor)
        check_text("reason", reason)
        for _ in range(ATTEMPTS):
            current = self._champion_number(model_name)
            if current is None:
                raise RegistryError(f"model {model_name!r} has no champion to roll back from")
            target, skipped = self._restorable(model_name, current)
            if target is None and not skipped:
                raise RegistryError(
                    f"model {model_name!r}: champion version {current} replaced no earlier "
                    "champion; there is nothing to roll back to"
                )
            if target is None:
                raise IntegrityError(
                    f"model {model_name!r}: no earlier champion can be restored "
                    f"({_describe_skipped(skipped)}); champion v{current} is unchanged"
                )
            try:
                return self._transact(
                    lambda conn, t=target, c=current, s=skipped: _move_champion(
                        conn, t, actor, reason, "rollback", expected=c, skipped=s
                    )
                )
            except _ChampionMoved:
                continue  # someone moved the alias while we hashed files: look again
        raise RegistryError(f"model {model_name!r}: the champion kept moving; try again")

    def retire(
        self, model_name: str, version: int, *, actor: str, reason: str, force: bool = False
    ) -> Move:
        """Take a version out of use for good; a retired version is never champion again
        unless a forced promotion brings it back.

        Retiring the champion needs `force`: the alias then goes back to the newest earlier
        champion that can still serve (files verified, as for a rollback), or the model is
        left without a champion.
        """
        check_version_number("version", version)
        check_text("actor", actor)
        check_text("reason", reason)
        for _ in range(ATTEMPTS):
            row = self.get_version(model_name, version)
            handback: ModelVersion | None = None
            skipped: list[dict[str, Any]] = []
            if row.status is VersionStatus.CHAMPION and force:
                handback, skipped = self._restorable(model_name, version)
            try:
                return self._transact(
                    lambda conn, h=handback, s=skipped: _retire(
                        conn, model_name, version, actor, reason, force, h, s
                    )
                )
            except _ChampionMoved:
                continue
        raise RegistryError(f"model {model_name!r}: the champion kept moving; try again")

    # -- what a move may target ----------------------------------------------------------

    def _promotable(self, model_name: str, version: int, force: bool) -> ModelVersion:
        """The version, once the cheap refusals passed and its files verified; checked again
        inside the transaction, which hashes nothing while it holds the write lock."""
        target = self.get_version(model_name, version)
        _check_status(target, force)
        if CHAMPION in target.aliases:
            raise RegistryError(f"version {version} of {model_name!r} is already champion")
        problems = version_problems(target)
        if problems:
            raise IntegrityError(
                f"refusing to make {model_name} v{version} champion: its files are not the files "
                f"that were registered: {_first(problems)}"
            )
        return target

    def _champion_number(self, model_name: str) -> int | None:
        with self._read() as conn:
            _model_row(conn, model_name)
            return _alias_version(conn, model_name, CHAMPION)

    def _restorable(
        self, model_name: str, current: int
    ) -> tuple[ModelVersion | None, list[dict[str, Any]]]:
        """The newest earlier champion that can serve, and the ones skipped on the way."""
        with self._read() as conn:
            history = _champion_history(conn, model_name, current)
        skipped: list[dict[str, Any]] = []
        for number in history:
            candidate = self.get_version(model_name, number)
            if candidate.status in UNPROMOTABLE:
                skipped.append({"version": number, "why": f"it is {candidate.status.value}"})
                continue
            problems = version_problems(candidate)
            if problems:
                skipped.append({"version": number, "why": _first(problems)})
                continue
            return candidate, skipped
        return None, skipped

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
            _lock_model(conn, model_name)  # one writer per model chain at a time
            if version is not None:
                _version_row(conn, model_name, version)
            return _insert_audit(
                conn,
                at=_now(),
                actor=actor,
                action=action,
                model_name=model_name,
                version=version,
                reason=reason,
                details=payload,
            )

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

    def verify_audit(self, name: str | None = None) -> list[ChainReport]:
        """Walk each model's chain (or `name`'s): the first entry that breaks it, if any."""
        with self._read() as conn:
            if name is not None:
                _model_row(conn, name)
                names = [name]
            else:
                listed = conn.execute(sa.select(models.c.name)).scalars().all()
                logged = conn.execute(sa.select(audit.c.model_name).distinct()).scalars().all()
                names = sorted({*listed, *logged})
            return [
                walk_chain(
                    n,
                    conn.execute(
                        sa.select(audit).where(audit.c.model_name == n).order_by(audit.c.id)
                    ).all(),
                )
                for n in names
            ]


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


_ANY = object()  # `expected` for moves that do not compare and swap


def _check_status(target: ModelVersion, force: bool) -> None:
    if target.status in UNPROMOTABLE and not force:
        raise RegistryError(
            f"version {target.version} of {target.model_name!r} is {target.status.value} and "
            "cannot become champion (force it with --force and a reason if you must)"
        )


def _move_champion(
    conn: Connection,
    target: ModelVersion,
    actor: str,
    reason: str,
    action: str,
    *,
    expected: object,
    force: bool = False,
    skipped: list[dict[str, Any]] | None = None,
) -> Move:
    """Point the alias at `target`, whose files were verified before the transaction; the
    row must still be that record, and the champion still `expected` (unless `_ANY`)."""
    name, version = target.model_name, target.version
    _lock_model(conn, name)
    row = _version_row(conn, name, version)
    if (row.model_sha256, row.manifest_sha256, row.artifact_uri) != (
        target.model_sha256,
        target.manifest_sha256,
        target.artifact_uri,
    ):
        raise IntegrityError(f"{name} v{version}: its registry record changed while verifying it")
    status = VersionStatus(row.status)
    _check_status(_to_version(row, ()), force)
    previous = _alias_version(conn, name, CHAMPION)
    if expected is not _ANY and previous != expected:
        raise _ChampionMoved(previous)
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
    if skipped:
        details["skipped"] = skipped
    entry = _insert_audit(
        conn,
        at=now,
        actor=actor,
        action=action,
        model_name=name,
        version=version,
        reason=reason,
        details=details,
    )
    return Move(_version(conn, _version_row(conn, name, version)), entry, version)


def _skip_promotion(
    conn: Connection, target: ModelVersion, actor: str, judged: int | None, now_champion: int | None
) -> Move:
    """The candidate stays a candidate; the log says which champion its gate never saw."""
    name, version = target.model_name, target.version

    def label(v: int | None) -> str:
        return "no champion" if v is None else f"v{v}"

    entry = _insert_audit(
        conn,
        at=_now(),
        actor=actor,
        action=SKIPPED_PROMOTION,
        model_name=name,
        version=version,
        reason=(
            f"passed the gate against {label(judged)}, but the champion is now "
            f"{label(now_champion)}: not promoted, since no gate judged it against that one"
        ),
        details={"judged_against": judged, "champion": now_champion},
    )
    return Move(_version(conn, _version_row(conn, name, version)), entry, now_champion)


def _retire(
    conn: Connection,
    name: str,
    version: int,
    actor: str,
    reason: str,
    force: bool,
    handback: ModelVersion | None,
    skipped: list[dict[str, Any]],
) -> Move:
    _lock_model(conn, name)
    row = _version_row(conn, name, version)
    status = VersionStatus(row.status)
    if status is VersionStatus.RETIRED:
        raise RegistryError(f"version {version} of {name!r} is already retired")
    details: dict[str, Any] = {"previous_status": status.value, "forced": False}
    champion = _alias_version(conn, name, CHAMPION)
    if status is VersionStatus.CHAMPION:
        if not force:
            raise RegistryError(
                f"version {version} of {name!r} is the champion; promote another "
                "version or roll back before retiring it, or force it (--force), which "
                "hands the alias back to the previous champion or leaves none"
            )
        if champion != version:
            raise _ChampionMoved(champion)
        champion = _hand_back(conn, name, handback)
        details.update(forced=True, champion_now=champion)
        if skipped:
            details["skipped"] = skipped
    _set_status(conn, name, version, VersionStatus.RETIRED)
    entry = _insert_audit(
        conn,
        at=_now(),
        actor=actor,
        action="retire",
        model_name=name,
        version=version,
        reason=reason,
        details=details,
    )
    return Move(_version(conn, _version_row(conn, name, version)), entry, champion)


def _hand_back(conn: Connection, name: str, handback: ModelVersion | None) -> int | None:
    """Move the alias off a champion being retired: to `handback` (verified before the
    transaction) if it can still serve, else remove it. Returns the new champion, if any."""
    if handback is not None:
        row = _version_row(conn, name, handback.version)
        if VersionStatus(row.status) in UNPROMOTABLE:
            handback = None
    if handback is None:
        conn.execute(
            aliases.delete().where(aliases.c.model_name == name).where(aliases.c.alias == CHAMPION)
        )
        return None
    _set_alias(conn, name, CHAMPION, handback.version, _now(), exists=True)
    _set_status(conn, name, handback.version, VersionStatus.CHAMPION)
    return handback.version


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


def _previous_champion(conn: Connection, name: str, current: int) -> int | None:
    """The version `current` replaced as champion, as its latest promotion recorded."""
    row = conn.execute(
        sa.select(audit.c.details)
        .where(audit.c.model_name == name)
        .where(audit.c.version == current)
        .where(audit.c.action.in_(("promote", "rollback")))
        .order_by(audit.c.id.desc())
        .limit(1)
    ).first()
    previous = row.details.get("previous") if row is not None else None
    return None if previous is None else int(previous)


def _champion_history(conn: Connection, name: str, current: int) -> list[int]:
    """Earlier champions, newest first: the one `current` replaced, the one that one
    replaced, and so on (each once)."""
    seen, history = {current}, []
    previous = _previous_champion(conn, name, current)
    while previous is not None and previous not in seen:
        history.append(previous)
        seen.add(previous)
        previous = _previous_champion(conn, name, previous)
    return history


def _describe_skipped(skipped: list[dict[str, Any]]) -> str:
    return "; ".join(f"v{s['version']}: {s['why']}" for s in skipped)


def _first(problems: list[str]) -> str:
    more = len(problems) - 1
    return problems[0] + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")


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
) -> AuditEntry:
    """Append the entry at the end of its model's chain and return it as stored.

    Callers hold the model's lock; the unique (model, seq) index makes a writer that did not
    lose the race anyway fail and retry instead of forking the chain.
    """
    details = json.loads(json.dumps(details, allow_nan=False))  # exactly what is read back
    last = conn.execute(
        sa.select(audit.c.seq, audit.c.entry_hash)
        .where(audit.c.model_name == model_name)
        .where(audit.c.seq.is_not(None))
        .order_by(audit.c.seq.desc())
        .limit(1)
    ).first()
    seq, prev_hash = (last.seq + 1, last.entry_hash) if last else (1, genesis(model_name))
    values = {
        "at": at,
        "actor": actor,
        "action": action,
        "model_name": model_name,
        "version": version,
        "reason": reason,
        "details": details,
        "seq": seq,
        "prev_hash": prev_hash,
    }
    digest = entry_hash(**values)
    result = conn.execute(audit.insert().values(**values, entry_hash=digest))
    entry_id = int(result.inserted_primary_key[0])
    return _audit_entry(conn.execute(sa.select(audit).where(audit.c.id == entry_id)).one())


# -- upgrade and guards ----------------------------------------------------------------------


def _anchor_manifests(conn: Connection) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """Record the manifest hash of every version that has none, from its run folder as found
    now; versions whose folder is gone stay without one (and can never be champion)."""
    anchored: dict[str, list[int]] = {}
    missing: dict[str, list[int]] = {}
    rows = conn.execute(
        sa.select(model_versions).where(model_versions.c.manifest_sha256.is_(None))
    ).all()
    for row in rows:
        digest = stored_manifest_sha256(row.artifact_uri)
        found = anchored if digest is not None else missing
        found.setdefault(row.model_name, []).append(row.version)
        if digest is not None:
            conn.execute(
                model_versions.update()
                .where(model_versions.c.id == row.id)
                .values(manifest_sha256=digest)
            )
    return anchored, missing


def _start_chains(
    conn: Connection, anchored: dict[str, list[int]], missing: dict[str, list[int]]
) -> None:
    """One chain-start entry per model, sealing the entries written before the chain."""
    listed = conn.execute(sa.select(models.c.name)).scalars().all()
    logged = conn.execute(sa.select(audit.c.model_name).distinct()).scalars().all()
    for name in sorted({*listed, *logged}):
        legacy = conn.execute(
            sa.select(audit).where(audit.c.model_name == name).order_by(audit.c.id)
        ).all()
        found, gone = anchored.get(name, []), missing.get(name, [])
        reason = (
            "registry upgraded in place: from this entry on the audit log is hash-chained and "
            "the database refuses UPDATE and DELETE on it; the "
            f"{len(legacy)} earlier entries were not protected when written and are sealed "
            "here as found"
        )
        if found:
            reason += "; manifest hashes recorded now from the run folders as found: "
            reason += ", ".join(f"v{v}" for v in found)
        if gone:
            reason += "; no run folder found for " + ", ".join(f"v{v}" for v in gone)
            reason += " (their files cannot be verified, so they can never be champion)"
        _insert_audit(
            conn,
            at=_now(),
            actor=UPGRADE_ACTOR,
            action=CHAIN_START,
            model_name=name,
            version=None,
            reason=reason,
            details={
                "legacy": legacy_seal(legacy),
                "manifests_anchored": found,
                "manifests_missing": gone,
            },
        )


def _install_guards(conn: Connection) -> bool:
    """Create the append-only triggers that are missing; True if any was."""
    dialect = conn.dialect.name
    if dialect == "sqlite":
        present = set(
            conn.execute(
                sa.text(
                    "SELECT name FROM sqlite_master "
                    "WHERE type = 'trigger' AND tbl_name = 'audit_log'"
                )
            ).scalars()
        )
        wanted = _SQLITE_GUARDS
    elif dialect == "postgresql":
        present = set(
            conn.execute(
                sa.text(
                    "SELECT tgname FROM pg_trigger "
                    "WHERE tgrelid = 'audit_log'::regclass AND NOT tgisinternal"
                )
            ).scalars()
        )
        wanted = _PG_GUARDS
        if set(wanted) - present:
            conn.execute(sa.text(_PG_FUNCTION))
    else:  # other databases: the chain still shows a rewrite, nothing refuses it
        return False
    absent = [name for name in wanted if name not in present]
    for name in absent:
        conn.execute(sa.text(wanted[name]))
    return bool(absent)


def _has_entries(conn: Connection) -> bool:
    return conn.execute(sa.select(audit.c.id).limit(1)).first() is not None


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
        manifest_sha256=row.manifest_sha256,
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
        seq=row.seq,
        prev_hash=row.prev_hash,
        entry_hash=row.entry_hash,
    )

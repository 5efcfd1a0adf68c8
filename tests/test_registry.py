"""Registry behaviour on real SQLite files: numbering, champion moves, refusals, concurrency."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
import registry_runs
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateTable

from modelcycle.errors import RegistryError
from modelcycle.registry import (
    AuditEntry,
    ModelRecord,
    ModelVersion,
    Registration,
    Registry,
    VersionStatus,
    metadata,
)

N_PROCESSES = 8
registry_url = registry_runs.registry_url  # the fixture: SQLite, and PostgreSQL when set
write_run = registry_runs.write_run


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state' / 'registry.db'}"


@pytest.fixture(autouse=True)
def _store(tmp_path: Path) -> Path:
    """Where this test's run folders go (the registry only records their location)."""
    global STORE
    STORE = tmp_path / "artifacts"
    return STORE


STORE = Path("unset")


def _fields(run_id: str, store: Path | None = None, **overrides: Any) -> dict[str, Any]:
    model = overrides.get("model_name", "churn")
    run = write_run(store or STORE, model, run_id)
    fields: dict[str, Any] = {
        "model_name": "churn",
        "owner": "risk-team",
        "description": "churn classifier",
        "run_id": run_id,
        **run.fields(),
        "data_fingerprint": "data-fp",
        "code_version": "abc123",
        "package_versions": {"scikit-learn": "1.9.1"},
        "parent_version": None,
        "metrics": {"roc_auc": 0.81},
        "gate": {"passed": True, "reasons": []},
        "status": VersionStatus.CANDIDATE,
        "actor": "trainer",
        "reason": "gate passed",
    }
    fields.update(overrides)
    return fields


def _register_one(registry: Registry, fields: dict[str, Any]) -> ModelVersion:
    """Register through the typed record, as the training flow does."""
    fields = dict(fields)
    control = {key: fields.pop(key) for key in ("status", "actor", "reason")}
    return registry.register_version(Registration(**fields), **control)


@pytest.fixture
def registry(registry_url: str) -> Iterator[Registry]:
    reg = Registry(registry_url)
    yield reg
    reg.close()


def _register(registry: Registry, n: int, **overrides: Any) -> list[ModelVersion]:
    return [_register_one(registry, _fields(f"run-{i}", **overrides)) for i in range(n)]


def _champion_rows(url: str) -> tuple[int, int]:
    """Count champion aliases and champion-status versions straight from the tables."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            aliases = conn.execute(
                sa.text("SELECT count(*) FROM aliases WHERE alias = 'champion'")
            ).scalar_one()
            statuses = conn.execute(
                sa.text("SELECT count(*) FROM model_versions WHERE status = 'champion'")
            ).scalar_one()
    finally:
        engine.dispose()
    return aliases, statuses


def test_register_allocates_consecutive_versions(registry: Registry) -> None:
    versions = _register(registry, 3)

    assert [v.version for v in versions] == [1, 2, 3]
    assert all(v.status is VersionStatus.CANDIDATE for v in versions)
    assert [e.action for e in registry.audit_log("churn")] == ["register"] * 3
    assert registry.get_model("churn") == ModelRecord(
        name="churn",
        owner="risk-team",
        description="churn classifier",
        created_at=registry.get_model("churn").created_at,
    )
    assert registry.get_model("churn").created_at.tzinfo is not None


def test_versions_are_numbered_per_model(registry: Registry) -> None:
    _register_one(registry, _fields("a-1", model_name="a"))
    _register_one(registry, _fields("b-1", model_name="b"))
    second = _register_one(registry, _fields("a-2", model_name="a"))

    assert second.version == 2
    assert [m.name for m in registry.list_models()] == ["a", "b"]


def test_version_round_trips_every_field(registry: Registry) -> None:
    _register_one(registry, _fields("run-0"))
    fields = _fields(
        "run-1", parent_version=1, metrics={"roc_auc": 0.9, "per_group": {"a": [1, 2]}}
    )
    sha = fields["model_sha256"]
    _register_one(registry, {**fields, "model_sha256": sha.upper()})

    got = registry.get_version("churn", 2)
    assert got.parent_version == 1
    assert got.metrics == {"roc_auc": 0.9, "per_group": {"a": [1, 2]}}
    assert got.model_sha256 == sha
    assert got.manifest_sha256 == fields["manifest_sha256"]
    assert got.package_versions == {"scikit-learn": "1.9.1"}
    assert got.created_at.tzinfo == UTC
    assert got.model_location == f"{STORE}/churn/run-1/model.skops"
    as_dict = got.to_dict()
    assert as_dict["status"] == "candidate"
    assert as_dict["created_at"].endswith("+00:00")
    # `models versions` prints the keys in this order; --json keeps it too.
    assert list(as_dict) == [
        "model_name",
        "version",
        "status",
        "aliases",
        "run_id",
        "artifact_uri",
        "model_file",
        "model_location",
        "model_sha256",
        "manifest_sha256",
        "data_fingerprint",
        "config_hash",
        "code_version",
        "package_versions",
        "parent_version",
        "metrics",
        "gate",
        "created_at",
        "created_by",
    ]
    assert as_dict["model_location"] == got.model_location
    assert as_dict["aliases"] == []


def test_promote_moves_champion_and_archives_previous(registry: Registry) -> None:
    _register(registry, 3)

    first = registry.promote("churn", 1, actor="alice", reason="first model").version
    second = registry.promote("churn", 3, actor="bob", reason="better auc").version

    assert first.status is VersionStatus.CHAMPION
    assert second.status is VersionStatus.CHAMPION
    assert second.aliases == ("champion",)
    statuses = {v.version: v.status for v in registry.list_versions("churn")}
    assert statuses == {
        1: VersionStatus.ARCHIVED,
        2: VersionStatus.CANDIDATE,
        3: VersionStatus.CHAMPION,
    }
    assert registry.champion("churn") == registry.get_version("churn", 3)
    promotions = [e for e in registry.audit_log("churn") if e.action == "promote"]
    assert [(e.version, e.actor, e.reason, e.details) for e in promotions] == [
        (1, "alice", "first model", {"previous": None}),
        (3, "bob", "better auc", {"previous": 1}),
    ]
    assert _champion_rows(registry.url) == (1, 1)


def test_archived_version_can_come_back(registry: Registry) -> None:
    _register(registry, 2)
    registry.promote("churn", 1, actor="a", reason="r")
    registry.promote("churn", 2, actor="a", reason="r")

    back = registry.promote("churn", 1, actor="a", reason="regression in production").version

    assert back.status is VersionStatus.CHAMPION
    assert registry.get_version("churn", 2).status is VersionStatus.ARCHIVED
    assert _champion_rows(registry.url) == (1, 1)


def test_rollback_returns_to_previous_champion(registry: Registry) -> None:
    _register(registry, 2)
    registry.promote("churn", 1, actor="a", reason="r")
    registry.promote("churn", 2, actor="a", reason="r")

    rolled = registry.rollback("churn", actor="oncall", reason="latency spike")

    assert rolled.version.version == rolled.champion == 1
    assert rolled.entry == registry.audit_log("churn")[-1]
    assert registry.get_version("churn", 2).status is VersionStatus.ARCHIVED
    last = registry.audit_log("churn")[-1]
    assert (last.action, last.version, last.details) == ("rollback", 1, {"previous": 2})


def test_rollback_without_history_is_refused(registry: Registry) -> None:
    _register(registry, 1)
    with pytest.raises(RegistryError, match="no champion"):
        registry.rollback("churn", actor="a", reason="r")
    registry.promote("churn", 1, actor="a", reason="r")
    with pytest.raises(RegistryError, match="nothing to roll back"):
        registry.rollback("churn", actor="a", reason="r")


def test_promote_unknown_version_changes_nothing(registry: Registry) -> None:
    _register(registry, 2)
    registry.promote("churn", 1, actor="a", reason="r")
    before = (registry.list_versions("churn"), registry.audit_log())

    with pytest.raises(
        RegistryError, match=r"'churn' has no version 7 \(versions that exist: 1, 2\)"
    ):
        registry.promote("churn", 7, actor="a", reason="r")

    assert (registry.list_versions("churn"), registry.audit_log()) == before


def test_promote_unknown_model_names_known_models(registry: Registry) -> None:
    _register(registry, 1)
    with pytest.raises(RegistryError, match=r"no model named 'churm'.*known models: churn"):
        registry.promote("churm", 1, actor="a", reason="r")


@pytest.mark.parametrize("status", [VersionStatus.REJECTED, VersionStatus.RETIRED])
def test_promote_rejected_or_retired_is_refused(registry: Registry, status: VersionStatus) -> None:
    _register_one(registry, _fields("run-0"))
    registry.promote("churn", 1, actor="a", reason="r")
    if status is VersionStatus.REJECTED:
        _register_one(registry, _fields("run-1", status="rejected", reason="auc below floor"))
    else:
        _register_one(registry, _fields("run-1"))
        registry.retire("churn", 2, actor="a", reason="data licence expired")
    audit_before = len(registry.audit_log())

    with pytest.raises(RegistryError, match=f"is {status.value} and cannot become champion"):
        registry.promote("churn", 2, actor="a", reason="r")

    assert registry.champion("churn").version == 1
    assert registry.get_version("churn", 2).status is status
    assert len(registry.audit_log()) == audit_before


def test_rejected_registration_is_audited_as_reject(registry: Registry) -> None:
    version = _register_one(registry, _fields("run-0", status=VersionStatus.REJECTED))
    assert version.status is VersionStatus.REJECTED
    assert [e.action for e in registry.audit_log("churn")] == ["reject"]


def test_promote_current_champion_is_refused(registry: Registry) -> None:
    _register(registry, 1)
    registry.promote("churn", 1, actor="a", reason="r")
    count = len(registry.audit_log())
    with pytest.raises(RegistryError, match="already champion"):
        registry.promote("churn", 1, actor="a", reason="r")
    assert len(registry.audit_log()) == count


def test_retire_champion_is_refused(registry: Registry) -> None:
    _register(registry, 1)
    registry.promote("churn", 1, actor="a", reason="r")
    with pytest.raises(RegistryError, match="is the champion"):
        registry.retire("churn", 1, actor="a", reason="r")
    assert registry.get_version("churn", 1).status is VersionStatus.CHAMPION


def test_alias_primary_key_forbids_a_second_champion(registry: Registry) -> None:
    _register(registry, 2)
    registry.promote("churn", 1, actor="a", reason="r")
    engine = sa.create_engine(registry.url)
    try:
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO aliases (model_name, alias, version, updated_at) "
                    "VALUES ('churn', 'champion', 2, '2026-01-01 00:00:00')"
                )
            )
    finally:
        engine.dispose()
    assert _champion_rows(registry.url) == (1, 1)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"status": VersionStatus.CHAMPION}, "status"),
        ({"status": "shiny"}, "status"),
        ({"model_sha256": "abc"}, "model_sha256"),
        ({"model_sha256": "g" * 64}, "model_sha256"),
        ({"manifest_sha256": "abc"}, "manifest_sha256"),
        ({"model_name": "../etc"}, "model_name"),
        ({"model_file": "sub/model.skops"}, "model_file"),
        ({"actor": " "}, "actor"),
        ({"metrics": {"auc": float("nan")}}, "metrics"),
        ({"gate": {"when": object()}}, "gate"),
        ({"parent_version": 0}, "parent_version"),
    ],
)
def test_register_rejects_bad_input_naming_the_field(
    registry: Registry, overrides: dict[str, Any], field: str
) -> None:
    with pytest.raises(RegistryError, match=f"^{field}:"):
        _register_one(registry, _fields("run-0", **overrides))
    assert registry.list_models() == []


def test_unknown_parent_rolls_back_the_whole_registration(registry: Registry) -> None:
    with pytest.raises(RegistryError, match="has no parent_version 4"):
        _register_one(registry, _fields("run-0", parent_version=4))
    # The model row was written in the same transaction: it must be gone too.
    assert registry.list_models() == []
    assert registry.audit_log() == []


def test_same_run_registered_twice_gives_one_version(registry: Registry) -> None:
    fields = _fields("run-0")
    first = _register_one(registry, fields)
    again = _register_one(registry, fields)
    assert again == first
    assert len(registry.list_versions("churn")) == 1
    with pytest.raises(RegistryError, match=r"^run_id: run 'run-0' already registered"):
        _register_one(registry, {**_fields("run-0b"), "run_id": "run-0"})


def test_lookups_name_what_is_missing(registry: Registry) -> None:
    with pytest.raises(RegistryError, match="none registered yet"):
        registry.get_model("churn")
    assert registry.champion("churn") is None
    _register(registry, 2)
    assert registry.champion("churn") is None
    with pytest.raises(RegistryError, match=r"no version 3 \(versions that exist: 1, 2\)"):
        registry.get_version("churn", 3)
    with pytest.raises(RegistryError, match="no model named 'other'"):
        registry.list_versions("other")


def test_append_audit_and_to_dict(registry: Registry) -> None:
    _register(registry, 1)
    entry = registry.append_audit(
        actor="monitor",
        action="drift",
        model_name="churn",
        version=1,
        reason="PSI above 0.2 on tenure",
        details={"psi": 0.31},
    )
    assert isinstance(entry, AuditEntry)
    assert registry.audit_log("churn")[-1] == entry
    assert entry.to_dict()["details"] == {"psi": 0.31}
    assert not hasattr(registry, "delete_audit")
    with pytest.raises(RegistryError, match="no model named"):
        registry.append_audit(actor="m", action="drift", model_name="nope", reason="r")


def test_create_schema_is_idempotent_and_makes_the_folder(tmp_path: Path) -> None:
    url = _url(tmp_path)
    first, second = Registry(url), Registry(url)
    first.create_schema()
    first.create_schema()
    second.create_schema()
    assert (tmp_path / "state" / "registry.db").exists()
    first.close()
    second.close()


def test_constructor_does_no_io(tmp_path: Path) -> None:
    Registry(_url(tmp_path))
    assert not (tmp_path / "state").exists()


def test_bad_url_is_a_registry_error() -> None:
    with pytest.raises(RegistryError, match="not a SQLAlchemy URL"):
        Registry("not a url")


def test_unusable_database_is_a_registry_error(tmp_path: Path) -> None:
    (tmp_path / "registry.db").mkdir()  # a folder where the database file should be
    with pytest.raises(RegistryError, match="database error"):
        Registry(f"sqlite:///{tmp_path / 'registry.db'}").list_models()
    with pytest.raises(RegistryError, match="no SQLAlchemy driver"):
        Registry("postgresql+nosuchdriver://user:secret@localhost/db").list_models()


def test_schema_compiles_for_postgresql() -> None:
    dialect = postgresql.dialect()
    ddl = "\n".join(str(CreateTable(t).compile(dialect=dialect)) for t in metadata.sorted_tables)
    assert "TIMESTAMP WITH TIME ZONE" in ddl
    assert "JSON" in ddl


def _race(url: str, store: Path, barrier: Any, index: int) -> None:
    """One process: register a version, then make it champion, all starting together."""
    registry = Registry(url)
    fields = _fields(f"proc-{index}-{os.getpid()}", store)
    barrier.wait()
    version = _register_one(registry, fields)
    registry.promote("churn", version.version, actor=f"proc-{index}", reason="race")
    registry.close()


def test_parallel_processes_leave_exactly_one_champion(registry_url: str, _store: Path) -> None:
    url = registry_url
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(N_PROCESSES)
    procs = [ctx.Process(target=_race, args=(url, _store, barrier, i)) for i in range(N_PROCESSES)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    assert [proc.exitcode for proc in procs] == [0] * N_PROCESSES

    registry = Registry(url)
    versions = registry.list_versions("churn")
    log = registry.audit_log("churn")
    assert sorted(v.version for v in versions) == list(range(1, N_PROCESSES + 1))
    assert _champion_rows(url) == (1, 1)
    champion = registry.champion("churn")
    assert champion is not None
    assert [v.version for v in versions if v.status is VersionStatus.CHAMPION] == [champion.version]
    assert sum(e.action == "register" for e in log) == N_PROCESSES
    promotes = [e for e in log if e.action == "promote"]
    assert len(promotes) == N_PROCESSES
    # Each promotion saw the one before it: the history is one unbroken chain.
    assert [e.details["previous"] for e in promotes] == [None] + [e.version for e in promotes[:-1]]
    assert promotes[-1].version == champion.version
    registry.close()

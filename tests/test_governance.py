"""Promotion, rollback and retirement: refusals that change nothing, forced moves that say so,
50 parallel promotions, and a promotion killed inside its transaction."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from registry_runs import write_run
from typer.testing import CliRunner

from modelcycle.errors import RegistryError
from modelcycle.registry import ModelVersion, Registration, Registry, VersionStatus

MODEL = "churn"
REPO = Path(__file__).resolve().parent.parent


def _fields(
    run_id: str, store: Path, status: VersionStatus = VersionStatus.CANDIDATE
) -> dict[str, Any]:
    return {
        "model_name": MODEL,
        "owner": "risk-team",
        "description": "churn classifier",
        "run_id": run_id,
        **write_run(store, MODEL, run_id).fields(),
        "data_fingerprint": "data-fp",
        "code_version": "abc123",
        "package_versions": {},
        "parent_version": None,
        "metrics": {"roc_auc": 0.8},
        "gate": {"passed": status is VersionStatus.CANDIDATE},
        "status": status,
        "actor": "trainer",
        "reason": "test fixture",
    }


def _register_one(registry: Registry, fields: dict[str, Any]) -> ModelVersion:
    """Register through the typed record, as the training flow does."""
    fields = dict(fields)
    control = {key: fields.pop(key) for key in ("status", "actor", "reason")}
    return registry.register_version(Registration(**fields), **control)


def _registry_with(url: str, statuses: list[VersionStatus], store: Path) -> Registry:
    """Versions 1..n with these statuses, each with a real run folder under `store`."""
    registry = Registry(url)
    for i, status in enumerate(statuses):
        _register_one(registry, _fields(f"run-{i}", store, status))
    return registry


def _snapshot(registry: Registry) -> tuple[Any, ...]:
    champion = registry.champion(MODEL)
    return (
        champion.version if champion else None,
        [(v.version, v.status) for v in registry.list_versions(MODEL)],
        len(registry.audit_log(MODEL)),
    )


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'registry.db'}"


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "artifacts"


# --- registry rules ------------------------------------------------------------------------


def test_rejected_version_is_promoted_only_when_forced(url: str, store: Path) -> None:
    registry = _registry_with(url, [VersionStatus.CANDIDATE, VersionStatus.REJECTED], store)
    registry.promote(MODEL, 1, actor="a", reason="first")
    before = _snapshot(registry)
    with pytest.raises(RegistryError, match=r"version 2 of 'churn' is rejected .*--force"):
        registry.promote(MODEL, 2, actor="a", reason="try")
    assert _snapshot(registry) == before
    forced = registry.promote(MODEL, 2, actor="ana", reason="reviewed by hand", force=True)
    assert forced.version.status is VersionStatus.CHAMPION
    entry = registry.audit_log(MODEL)[-1]
    assert entry.details == {"previous": 1, "forced": True, "previous_status": "rejected"}
    assert entry.reason == "reviewed by hand"


def test_retiring_the_only_champion_needs_force_and_then_leaves_none(url: str, store: Path) -> None:
    registry = _registry_with(url, [VersionStatus.CANDIDATE], store)
    registry.promote(MODEL, 1, actor="a", reason="first")
    before = _snapshot(registry)
    with pytest.raises(RegistryError, match=r"version 1 of 'churn' is the champion.*--force"):
        registry.retire(MODEL, 1, actor="a", reason="old")
    assert _snapshot(registry) == before
    registry.retire(MODEL, 1, actor="a", reason="old", force=True)
    assert registry.champion(MODEL) is None
    assert registry.get_version(MODEL, 1).status is VersionStatus.RETIRED
    assert registry.audit_log(MODEL)[-1].details["champion_now"] is None
    with pytest.raises(RegistryError, match="retired and cannot become champion"):
        registry.promote(MODEL, 1, actor="a", reason="back?")


def test_forced_retirement_of_a_champion_hands_the_alias_back(url: str, store: Path) -> None:
    registry = _registry_with(url, [VersionStatus.CANDIDATE] * 2, store)
    registry.promote(MODEL, 1, actor="a", reason="first")
    registry.promote(MODEL, 2, actor="a", reason="second")
    registry.retire(MODEL, 2, actor="a", reason="bad in production", force=True)
    assert registry.champion(MODEL).version == 1
    assert registry.get_version(MODEL, 1).status is VersionStatus.CHAMPION
    assert registry.get_version(MODEL, 2).status is VersionStatus.RETIRED


# --- CLI refusals: a clear message and an unchanged registry -------------------------------


def _cli(*args: str):
    from modelcycle.cli import app

    return CliRunner().invoke(app, ["models", *args])


def _message(result) -> str:
    assert result.exit_code == 1, result.output
    return " ".join(result.output.split())


@pytest.fixture
def cli_registry(state) -> Registry:
    registry = _registry_with(
        state.registry_url, [VersionStatus.CANDIDATE], Path(state.artifact_store)
    )
    registry.promote(MODEL, 1, actor="a", reason="first")
    return registry


@pytest.mark.usefixtures("prefect_harness")
def test_promote_a_version_that_does_not_exist(cli_registry: Registry) -> None:
    before = _snapshot(cli_registry)
    message = _message(_cli("promote", MODEL, "9", "--reason", "try"))
    assert "model 'churn' has no version 9 (versions that exist: 1)" in message
    assert _snapshot(cli_registry) == before


@pytest.mark.usefixtures("prefect_harness")
def test_rollback_with_no_previous_champion(cli_registry: Registry) -> None:
    before = _snapshot(cli_registry)
    message = _message(_cli("rollback", MODEL, "--reason", "undo"))
    assert "champion version 1 replaced no earlier champion" in message
    assert _snapshot(cli_registry) == before


@pytest.mark.usefixtures("prefect_harness")
def test_retire_the_only_champion_without_force(cli_registry: Registry) -> None:
    before = _snapshot(cli_registry)
    message = _message(_cli("retire", MODEL, "1", "--reason", "old"))
    assert "version 1 of 'churn' is the champion" in message and "--force" in message
    assert _snapshot(cli_registry) == before


@pytest.mark.usefixtures("prefect_harness")
def test_cli_story_promote_rollback_retire_audit(state, cli_registry: Registry) -> None:
    import json

    _register_one(cli_registry, _fields("run-2", Path(state.artifact_store)))
    assert _cli("promote", MODEL, "2", "--reason", "better on 2024").exit_code == 0
    assert cli_registry.champion(MODEL).version == 2
    assert _cli("rollback", MODEL, "--reason", "complaints").exit_code == 0
    assert cli_registry.champion(MODEL).version == 1
    assert _cli("retire", MODEL, "2", "--reason", "superseded").exit_code == 0
    assert cli_registry.get_version(MODEL, 2).status is VersionStatus.RETIRED
    result = _cli("audit", MODEL, "--json")
    entries = json.loads(result.output)
    story = [(e["action"], e["version"], e["reason"]) for e in entries[-3:]]
    assert story == [
        ("promote", 2, "better on 2024"),
        ("rollback", 1, "complaints"),
        ("retire", 2, "superseded"),
    ]
    assert all(e["actor"].startswith("cli") for e in entries[-3:])


# --- concurrency and crashes ---------------------------------------------------------------


def _promote_one(args: tuple[str, int]) -> tuple[int, int]:
    """One process's promotion through the library, and the entry its transaction reported
    (the CLI race is in test_concurrent_promotion)."""
    url, version = args
    registry = Registry(url)
    try:
        move = registry.promote(
            MODEL, version, actor=f"proc-{os.getpid()}", reason=f"race {version}"
        )
    finally:
        registry.close()
    return version, move.entry.id


def test_fifty_parallel_promotions_leave_one_champion_and_fifty_entries(
    url: str, store: Path
) -> None:
    registry = _registry_with(url, [VersionStatus.CANDIDATE] * 50, store)
    registry.close()
    with multiprocessing.get_context("spawn").Pool(8) as pool:
        done = dict(pool.map(_promote_one, [(url, v) for v in range(1, 51)], chunksize=1))
    assert sorted(done) == list(range(1, 51))

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        aliases = conn.execute(sa.text("SELECT count(*) FROM aliases")).scalar_one()
        champions = conn.execute(
            sa.text("SELECT count(*) FROM model_versions WHERE status = 'champion'")
        ).scalar_one()
    engine.dispose()
    assert (aliases, champions) == (1, 1)
    log = [e for e in Registry(url).audit_log(MODEL) if e.action == "promote"]
    assert len(log) == 50 and sorted(e.version for e in log) == list(range(1, 51))
    # Each promotion saw the one before it: one unbroken chain, the last one is champion.
    assert [e.details["previous"] for e in log] == [None] + [e.version for e in log[:-1]]
    assert Registry(url).champion(MODEL).version == log[-1].version
    # Each process was told the entry its own transaction wrote, and the chain is whole.
    assert done == {e.version: e.id for e in log}
    assert [e.seq for e in Registry(url).audit_log(MODEL)] == list(range(1, 101))
    assert all(r.intact for r in Registry(url).verify_audit(MODEL))


# The child pauses inside the promotion's transaction: the alias and the statuses have moved,
# the audit entry is about to be written, nothing is committed. The pause is the test's own
# SQLAlchemy listener, so the registry carries no fault-injection code.
_PAUSED_PROMOTION = """
import sys, time
import sqlalchemy as sa
from modelcycle.registry import Registry

def pause(conn, cursor, statement, parameters, context, executemany):
    if statement.startswith("INSERT INTO audit_log") and "promote" in str(parameters):
        print("modelcycle-fault: inside promote", file=sys.stderr, flush=True)
        time.sleep(120)

sa.event.listen(sa.engine.Engine, "before_cursor_execute", pause)
Registry(sys.argv[1]).promote("churn", 2, actor="doomed", reason="killed")
"""


def test_a_promotion_killed_inside_its_transaction_changes_nothing(url: str, store: Path) -> None:
    registry = _registry_with(url, [VersionStatus.CANDIDATE] * 2, store)
    registry.promote(MODEL, 1, actor="a", reason="first")
    registry.close()
    before = _snapshot(Registry(url))
    proc = subprocess.Popen(
        [sys.executable, "-c", _PAUSED_PROMOTION, url], cwd=REPO, stderr=subprocess.PIPE, text=True
    )
    try:
        line = proc.stderr.readline()  # printed after the alias moved, before the commit
        assert "modelcycle-fault: inside promote" in line, line
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    after = Registry(url)
    assert _snapshot(after) == before
    assert after.champion(MODEL).version == 1
    # The database is usable at once: the same promotion now goes through.
    assert after.promote(MODEL, 2, actor="a", reason="again").version.version == 2


def test_contract_names_and_signatures_other_issues_rely_on() -> None:
    import inspect

    from flows.governance import promotion, retirement, rollback
    from tasks.approval import ApprovalInput

    assert (promotion.name, rollback.name, retirement.name) == (
        "promotion",
        "rollback",
        "retirement",
    )
    expected = {
        promotion: {"model_name": str, "version": int, "reason": str, "actor": str, "force": bool},
        rollback: {"model_name": str, "reason": str, "actor": str},
        retirement: {"model_name": str, "version": int, "reason": str, "actor": str, "force": bool},
    }
    defaults = {
        promotion: "promotion-flow",
        rollback: "rollback-flow",
        retirement: "retirement-flow",
    }
    for flow_, params in expected.items():
        signature = inspect.signature(flow_.fn)
        assert list(signature.parameters) == list(params)
        assert signature.parameters["actor"].default == defaults[flow_]
        if "force" in params:
            assert signature.parameters["force"].default is False
    fields = ApprovalInput.model_fields
    assert list(fields) == ["approved", "reviewer", "comment"]
    assert fields["comment"].default == ""

"""Issue 10, classes 2, 4 and 5: the champion alias only moves to files that verify, a run's
files are read through the manifest the registry anchored, and the audit log is a hash chain
the database refuses to rewrite. Through the CLI where a user meets it.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import registry_runs
import sqlalchemy as sa
from typer.testing import CliRunner, Result

from modelcycle.errors import IntegrityError
from modelcycle.registry import CHAIN_START, Registration, Registry, VersionStatus

MODEL = "churn"
LEGACY = Path(__file__).resolve().parent / "fixtures" / "legacy-layout"
LEGACY_MODEL = "gss-income"
registry_url = registry_runs.registry_url  # the fixture: SQLite, and PostgreSQL when set


def _cli(*args: str) -> Result:
    from modelcycle.cli import app

    return CliRunner().invoke(app, list(args))


def _register(registry: Registry, store: Path, run_id: str) -> int:
    written = registry_runs.write_run(store, MODEL, run_id)
    registration = Registration(
        model_name=MODEL,
        owner="risk-team",
        description="churn classifier",
        run_id=run_id,
        **written.fields(),
        data_fingerprint="data-fp",
        code_version="abc123",
        package_versions={},
        parent_version=None,
        metrics={"roc_auc": 0.8},
        gate={"passed": True},
    )
    version = registry.register_version(
        registration, status=VersionStatus.CANDIDATE, actor="trainer", reason="fixture"
    )
    return version.version


def _snapshot(registry: Registry) -> tuple[Any, ...]:
    champion = registry.champion(MODEL)
    return (
        champion.version if champion else None,
        [(v.version, v.status) for v in registry.list_versions(MODEL)],
        [e.to_dict() for e in registry.audit_log(MODEL)],
    )


def _run_folder(registry: Registry, version: int) -> Path:
    return Path(registry.get_version(MODEL, version).artifact_uri)


@pytest.fixture
def champions(state) -> Registry:
    """Versions 1, 2 and 3 with real run folders, promoted in that order (3 is champion)."""
    registry = Registry(state.registry_url)
    for i in range(3):
        _register(registry, Path(state.artifact_store), f"run-{i}")
        registry.promote(MODEL, i + 1, actor="a", reason=f"promote {i + 1}")
    return registry


# --- class 2: every move of the alias verifies the target's files --------------------------


def test_promoting_a_model_file_with_one_flipped_byte_is_refused(state) -> None:
    registry = Registry(state.registry_url)
    for i in range(2):
        _register(registry, Path(state.artifact_store), f"run-{i}")
    registry.promote(MODEL, 1, actor="a", reason="first")
    model_file = _run_folder(registry, 2) / "model.skops"
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 0x01
    model_file.write_bytes(bytes(data))
    before = _snapshot(registry)

    result = _cli("models", "promote", MODEL, "2", "--reason", "looks better")

    assert result.exit_code == 1
    message = " ".join(result.output.split())
    assert "refusing to make churn v2 champion" in message and "model.skops: SHA-256" in message
    assert _snapshot(registry) == before
    # The registry refuses on its own too (the flow's path, and anyone using the library).
    with pytest.raises(IntegrityError, match=r"model\.skops: SHA-256"):
        registry.promote(MODEL, 2, actor="a", reason="again", force=True)
    assert _snapshot(registry) == before


@pytest.mark.usefixtures("prefect_harness")
def test_rollback_skips_a_previous_champion_whose_run_folder_was_deleted(
    champions: Registry,
) -> None:
    shutil.rmtree(_run_folder(champions, 2))

    result = _cli("models", "rollback", MODEL, "--reason", "bad outcomes in production")

    assert result.exit_code == 0, result.output
    assert champions.champion(MODEL).version == 1
    entry = champions.audit_log(MODEL)[-1]
    assert f"v1 became champion (audit #{entry.id})" in " ".join(result.output.split())
    assert (entry.action, entry.version, entry.details["previous"]) == ("rollback", 1, 3)
    assert [s["version"] for s in entry.details["skipped"]] == [2]
    assert "no manifest" in entry.details["skipped"][0]["why"]


@pytest.mark.usefixtures("prefect_harness")
def test_rollback_with_no_earlier_champion_that_verifies_is_refused(champions: Registry) -> None:
    (_run_folder(champions, 2) / "card.json").write_text("{}")  # 2: a file changed
    shutil.rmtree(_run_folder(champions, 1))  # 1: its folder is gone
    before = _snapshot(champions)

    result = _cli("models", "rollback", MODEL, "--reason", "undo")

    assert result.exit_code == 1
    message = " ".join(result.output.split())
    assert "no earlier champion can be restored" in message
    assert "v2: card.json: size" in message and "v1:" in message
    assert _snapshot(champions) == before


def test_forced_retirement_hands_the_alias_only_to_a_champion_that_verifies(
    champions: Registry,
) -> None:
    (_run_folder(champions, 2) / "model.skops").write_bytes(b"swapped")

    move = champions.retire(MODEL, 3, actor="a", reason="withdrawn", force=True)

    assert move.champion == 1 == champions.champion(MODEL).version
    assert move.entry.details["skipped"][0]["version"] == 2


# --- class 4: run files are read through the manifest the registry anchored --------------


@pytest.fixture
def legacy_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The pre-layout registry and run folder (a real champion with a real card), moved."""
    home = tmp_path / "state"
    shutil.copytree(LEGACY, home)
    with sqlite3.connect(home / "registry.db") as db:
        for row_id, uri in db.execute("SELECT id, artifact_uri FROM model_versions").fetchall():
            new = home / "artifacts" / LEGACY_MODEL / Path(uri).name
            db.execute(
                "UPDATE model_versions SET artifact_uri = ? WHERE id = ?", (str(new), row_id)
            )
    monkeypatch.setenv("MODELCYCLE_HOME", str(home))
    return home


def _champion_folder(home: Path) -> Path:
    (folder,) = (home / "artifacts" / LEGACY_MODEL).iterdir()
    return folder


def _rewrite_manifest(folder: Path, edit: Any) -> str:
    """Edit the manifest as an attacker would, re-hashing the file entries they touched."""
    from modelcycle.artifacts import sha256_bytes

    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    data = (json.dumps(manifest, sort_keys=True, indent=2) + "\n").encode()
    path.write_bytes(data)
    return sha256_bytes(data)


def test_a_forged_card_with_its_manifest_hash_updated_is_refused(legacy_home: Path) -> None:
    from modelcycle.artifacts import sha256_bytes

    assert _cli("models", "card", LEGACY_MODEL, "1").exit_code == 0
    folder = _champion_folder(legacy_home)
    card = json.loads((folder / "card.json").read_text())
    card["owner"] = "someone-else"
    forged = json.dumps(card).encode()
    (folder / "card.json").write_bytes(forged)

    def vouch(manifest: dict[str, Any]) -> None:
        manifest["files"]["card.json"] = {"sha256": sha256_bytes(forged), "size": len(forged)}

    _rewrite_manifest(folder, vouch)
    result = _cli("models", "card", LEGACY_MODEL, "1")

    assert result.exit_code == 1
    message = " ".join(result.output.split())
    assert "manifest.json: SHA-256" in message and "the registry recorded" in message
    assert "someone-else" not in result.output


def test_an_edited_embedded_config_is_refused_at_monitoring_time(legacy_home: Path) -> None:
    from modelcycle.settings import get_settings
    from tasks.monitoring import load_monitored_champion

    settings = get_settings()
    # The upgrade anchors the manifest as found when the registry is first opened.
    assert Registry(settings.registry_url).champion(LEGACY_MODEL).manifest_sha256

    def silence_drift(manifest: dict[str, Any]) -> None:
        manifest["config"]["monitoring"]["drift_share"] = 0.99

    new_hash = _rewrite_manifest(_champion_folder(legacy_home), silence_drift)
    with pytest.raises(IntegrityError, match=r"manifest\.json: SHA-256 .* registry recorded"):
        load_monitored_champion.fn(LEGACY_MODEL, settings.registry_url, "", None)

    # Someone who can also write the database re-anchors the edited manifest: the config no
    # longer hashes to what training recorded.
    with sqlite3.connect(legacy_home / "registry.db") as db:
        db.execute("UPDATE model_versions SET manifest_sha256 = ?", (new_hash,))
    with pytest.raises(IntegrityError, match="embedded config hashes to"):
        load_monitored_champion.fn(LEGACY_MODEL, settings.registry_url, "", None)


# --- class 5: the audit log is a hash chain the database will not rewrite ------------------


def test_the_database_refuses_update_and_delete_on_the_audit_log(
    registry_url: str, tmp_path: Path
) -> None:
    registry = Registry(registry_url)
    _register(registry, tmp_path / "artifacts", "run-0")
    registry.promote(MODEL, 1, actor="a", reason="first")
    before = registry.audit_log(MODEL)
    engine = sa.create_engine(registry_url)
    statements = [
        "UPDATE audit_log SET reason = 'nothing happened'",
        "DELETE FROM audit_log WHERE action = 'promote'",
    ]
    if engine.dialect.name == "postgresql":
        statements.append("TRUNCATE audit_log")
    try:
        for statement in statements:
            with (
                pytest.raises(sa.exc.DatabaseError, match="audit_log is append-only"),
                engine.begin() as conn,
            ):
                conn.execute(sa.text(statement))
    finally:
        engine.dispose()
    assert registry.audit_log(MODEL) == before
    assert all(r.intact for r in registry.verify_audit())
    registry.close()


def _tamper(db_file: Path, *statements: str) -> None:
    """Edit the raw database file the way a user with the file would: triggers dropped first."""
    with sqlite3.connect(db_file) as db:
        db.execute("DROP TRIGGER audit_log_no_update")
        db.execute("DROP TRIGGER audit_log_no_delete")
        for statement in statements:
            db.execute(statement)


def test_audit_verify_names_the_first_entry_edited_behind_the_triggers(champions, state) -> None:
    log = champions.audit_log(MODEL)
    intact = _cli("audit", "verify", MODEL)
    assert intact.exit_code == 0, intact.output
    assert f"{len(log)} entries, chain intact" in intact.output
    assert log[-1].entry_hash in intact.output  # the head, to keep elsewhere
    champions.close()
    victim = next(e for e in log if e.action == "promote" and e.version == 2)
    _tamper(
        Path(state.registry_url.removeprefix("sqlite:///")),
        f"UPDATE audit_log SET reason = 'routine' WHERE id = {victim.id}",
    )

    verify = _cli("audit", "verify", MODEL)
    audit = _cli("models", "audit", MODEL, "--json")

    assert verify.exit_code == 1
    assert f"broken at entry #{victim.id}" in verify.output
    assert "content was changed" in verify.output
    assert "triggers were missing" in verify.output
    assert audit.exit_code == 0
    assert f"broken at entry #{victim.id}" in " ".join(audit.output.split())
    # The guards are back: the same edit is now refused by the database.
    with (
        sqlite3.connect(Path(state.registry_url.removeprefix("sqlite:///"))) as db,
        pytest.raises(sqlite3.DatabaseError, match="append-only"),
    ):
        db.execute("UPDATE audit_log SET reason = 'again'")


def test_audit_verify_names_the_entry_after_a_deleted_one(champions, state) -> None:
    log = champions.audit_log(MODEL)
    champions.close()
    gone, after = log[2], log[3]
    _tamper(
        Path(state.registry_url.removeprefix("sqlite:///")),
        f"DELETE FROM audit_log WHERE id = {gone.id}",
    )

    result = _cli("audit", "verify")

    assert result.exit_code == 1
    message = " ".join(result.output.split())
    assert f"broken at entry #{after.id}" in message and "removed" in message


def test_an_old_registry_is_upgraded_in_place_and_says_so(legacy_home: Path) -> None:
    from modelcycle.settings import get_settings

    db_file = legacy_home / "registry.db"
    with sqlite3.connect(db_file) as db:
        old = db.execute("SELECT id, reason FROM audit_log ORDER BY id").fetchall()
    registry = Registry(get_settings().registry_url)

    log = registry.audit_log(LEGACY_MODEL)
    (report,) = registry.verify_audit(LEGACY_MODEL)

    assert [(e.id, e.reason) for e in log[: len(old)]] == old  # history kept as it was
    start = log[len(old)]
    assert (start.action, start.seq) == (CHAIN_START, 1)
    assert "upgraded in place" in start.reason and "not protected" in start.reason
    assert "manifest hashes recorded now" in start.reason
    assert report.intact and report.sealed_legacy == len(old)
    assert registry.champion(LEGACY_MODEL).manifest_sha256 is not None
    registry.close()
    # The earlier entries are sealed from the upgrade on: an edit to one is named.
    _tamper(db_file, f"UPDATE audit_log SET reason = 'rewritten' WHERE id = {old[0][0]}")
    result = _cli("audit", "verify", LEGACY_MODEL)
    assert result.exit_code == 1
    assert f"broken at entry #{old[0][0]}" in " ".join(result.output.split())

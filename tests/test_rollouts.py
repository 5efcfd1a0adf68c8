"""Experiments and deprecations in the registry: each start, look and end audited in the hash
chain, bad input refused with nothing written, one running experiment per model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import registry_runs
from registry_runs import write_run

from modelcycle.errors import RegistryError
from modelcycle.registry import (
    ExperimentMode,
    ExperimentStatus,
    Registration,
    Registry,
    Rollouts,
    VersionStatus,
)

MODEL = "churn"
registry_url = registry_runs.registry_url  # the fixture: SQLite, and PostgreSQL when set


def _register(registry: Registry, store: Path, index: int, status: VersionStatus) -> None:
    registration = Registration(
        model_name=MODEL,
        owner="risk-team",
        description="churn classifier",
        run_id=f"run-{index}",
        **write_run(store, MODEL, f"run-{index}").fields(),
        data_fingerprint="data-fp",
        code_version="abc123",
        package_versions={},
        parent_version=None,
        metrics={"accuracy": 0.8},
        gate={"passed": status is not VersionStatus.REJECTED},
    )
    registry.register_version(registration, status=status, actor="trainer", reason="fixture")


@pytest.fixture
def rollouts(tmp_path: Path, registry_url: str) -> Rollouts:
    """v1 champion, v2 candidate, v3 rejected, v4 candidate."""
    url = registry_url
    registry = Registry(url)
    statuses = [VersionStatus.CANDIDATE] * 2 + [VersionStatus.REJECTED, VersionStatus.CANDIDATE]
    for i, status in enumerate(statuses, start=1):
        _register(registry, tmp_path / "store", i, status)
    registry.promote(MODEL, 1, actor="test", reason="first champion")
    return Rollouts(url)


def _chain(rollouts: Rollouts) -> list[tuple[str, int | None]]:
    return [(e.action, e.version) for e in rollouts.registry.audit_log(MODEL)]


def test_shadow_then_canary_replaces_the_running_experiment_and_audits_both(
    rollouts: Rollouts,
) -> None:
    shadow = rollouts.start(MODEL, 2, mode=ExperimentMode.SHADOW, actor="ann", reason="try v2")
    assert shadow.experiment.champion == 1 and shadow.experiment.paired
    canary = rollouts.start(
        MODEL, 2, mode=ExperimentMode.CANARY, share=0.1, actor="ann", reason="more"
    )
    assert canary.entry.details["replaced"] == {
        "experiment": shadow.experiment.id,
        "mode": "shadow",
    }
    assert canary.entry.details["share"] == 0.1
    assert rollouts.get(shadow.experiment.id).status is ExperimentStatus.REPLACED
    running = rollouts.running(MODEL)
    assert running is not None and running.mode is ExperimentMode.CANARY
    assert _chain(rollouts)[-2:] == [("shadow", 2), ("canary", 2)]
    assert all(r.intact for r in rollouts.registry.verify_audit(MODEL))


def test_looks_are_counted_and_the_end_keeps_its_evidence(rollouts: Rollouts) -> None:
    started = rollouts.start(MODEL, 2, mode="shadow", actor="ann", reason="try")
    eid = started.experiment.id
    for look in range(3):
        moved = rollouts.record_look(
            eid, evidence={"interval": [-0.1, 0.2 - look / 100]}, actor="flow", reason="continue"
        )
    assert moved.experiment.looks == 3
    assert moved.entry.details["look"] == 3
    ended = rollouts.finish(
        eid,
        ExperimentStatus.STOPPED,
        evidence={"guardrail": "latency_p99_ratio", "value": 3.2},
        actor="flow",
        reason="latency guardrail breached",
    )
    assert ended.experiment.status is ExperimentStatus.STOPPED
    assert ended.entry.action == "experiment-stop"
    assert ended.entry.details["looks"] == 3 and ended.entry.details["value"] == 3.2
    assert rollouts.running(MODEL) is None
    with pytest.raises(RegistryError, match="not running"):
        rollouts.record_look(eid, evidence={}, actor="flow", reason="late")


@pytest.mark.parametrize(
    ("version", "mode", "share", "message"),
    [
        (9, "shadow", 0.0, "no version 9|version 9"),
        (3, "shadow", 0.0, "did not pass the gate"),
        (1, "shadow", 0.0, "is the champion"),
        (2, "canary", 0.0, r"share: expected a number in \(0, 1\)"),
        (2, "canary", 1.0, r"share: expected a number in \(0, 1\)"),
        (2, "canary", float("nan"), "share"),
    ],
)
def test_bad_challengers_are_refused_and_nothing_is_written(
    rollouts: Rollouts, version: int, mode: str, share: float, message: str
) -> None:
    before = _chain(rollouts)
    with pytest.raises(RegistryError, match=message):
        rollouts.start(MODEL, version, mode=mode, share=share, actor="ann", reason="x")
    assert _chain(rollouts) == before
    assert rollouts.running(MODEL) is None


def test_deprecation_records_sunset_and_successor_and_refuses_bad_dates(
    rollouts: Rollouts,
) -> None:
    sunset = datetime.now(UTC) + timedelta(days=30)
    notice, entry = rollouts.deprecate(
        MODEL, 1, sunset=sunset, successor=2, actor="ann", reason="v2 is better"
    )
    assert notice.successor == 2 and abs(notice.sunset - sunset) < timedelta(seconds=1)
    assert entry.action == "deprecate" and entry.details["successor"] == 2
    assert rollouts.deprecations(MODEL)[1].successor == 2
    before = _chain(rollouts)
    bad: list[dict[str, Any]] = [
        {"sunset": datetime.now(UTC) - timedelta(days=1), "successor": None},
        {"sunset": datetime(2030, 1, 1), "successor": None},  # no offset
        {"sunset": sunset, "successor": 1},
        {"sunset": sunset, "successor": 3},  # rejected
        {"sunset": sunset, "successor": 99},
    ]
    messages = ["in the past", "UTC offset", "succeed itself", "rejected", "successor"]
    for kwargs, message in zip(bad, messages, strict=True):
        with pytest.raises(RegistryError, match=message):
            rollouts.deprecate(MODEL, 1, actor="ann", reason="x", **kwargs)
    assert _chain(rollouts) == before


# --- the command line: one line for every refusal, nothing written ---------------------------


@pytest.fixture
def cli_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Rollouts:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("MODELCYCLE_HOME", str(home))
    url = f"sqlite:///{home / 'registry.db'}"
    registry = Registry(url)
    statuses = [VersionStatus.CANDIDATE] * 2 + [VersionStatus.REJECTED]
    for i, status in enumerate(statuses, start=1):
        _register(registry, tmp_path / "store", i, status)
    registry.promote(MODEL, 1, actor="test", reason="first champion")
    return Rollouts(url)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["shadow", MODEL, "9"], "version 9"),
        (["shadow", MODEL, "3"], "did not pass the gate"),
        (["shadow", "nobody", "2"], "nobody"),
        (["canary", MODEL, "2", "--share", "1.5"], "share: expected a number in (0, 1)"),
        (["canary", MODEL, "2", "--share", "0"], "share: expected a number in (0, 1)"),
        (["deprecate", MODEL, "2", "--sunset", "2020-01-01"], "is in the past"),
        (["deprecate", MODEL, "2", "--sunset", "next week"], "--sunset: expected a date"),
        (["deprecate", MODEL, "2", "--sunset", "2030-01-01T00:00:00"], "with an offset"),
        (["deprecate", MODEL, "1", "--sunset", "2099-01-01", "--successor", "3"], "rejected"),
        (["shadow", MODEL, "2", "--reason", " "], "--reason: expected a non-empty reason"),
    ],
)
def test_cli_refusals_are_one_line_and_write_nothing(
    cli_state: Rollouts, args: list[str], message: str
) -> None:
    from typer.testing import CliRunner

    from modelcycle.cli import app

    before = _chain(cli_state)
    result = CliRunner().invoke(app, ["models", *args])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert message in lines[0]
    assert _chain(cli_state) == before
    assert cli_state.running(MODEL) is None and cli_state.deprecations(MODEL) == {}


def test_cli_moves_are_audited_and_listed(cli_state: Rollouts) -> None:
    from typer.testing import CliRunner

    from modelcycle.cli import app

    runner = CliRunner()
    shadow = runner.invoke(app, ["models", "shadow", MODEL, "2", "--reason", "try it"])
    assert shadow.exit_code == 0 and "v2 in shadow beside champion v1" in shadow.output
    canary = runner.invoke(app, ["models", "canary", MODEL, "2", "--share", "0.25"])
    assert canary.exit_code == 0 and "25.0% of requests" in canary.output
    notice = runner.invoke(
        app, ["models", "deprecate", MODEL, "1", "--sunset", "2099-12-31", "--successor", "2"]
    )
    assert notice.exit_code == 0 and "sunset 2099-12-31T00:00:00+00:00" in notice.output
    listed = runner.invoke(app, ["models", "experiments", MODEL, "--json"])
    history = [
        (e["mode"], e["status"], e["share"]) for e in __import__("json").loads(listed.output)
    ]
    assert history == [("shadow", "replaced", 0.0), ("canary", "running", 0.25)]
    assert _chain(cli_state)[-3:] == [("shadow", 2), ("canary", 2), ("deprecate", 1)]

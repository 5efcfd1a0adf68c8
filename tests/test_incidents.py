"""Incidents: one per model and kind while unresolved, notes for every change, CLI access."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from modelcycle.errors import RegistryError
from modelcycle.registry import IncidentLog, IncidentStatus, Severity


def _record(log: IncidentLog, kind: str = "drift", severity=Severity.HIGH, folder="/runs/1"):
    return log.record(
        model_name="m",
        version=3,
        kind=kind,
        severity=severity,
        summary=f"{kind} seen",
        evidence_folder=folder,
        details={"drifted_columns": ["age"]},
        actor="monitoring-flow",
    )


def test_repeat_updates_the_open_incident_and_resolving_allows_a_new_one(state):
    log = IncidentLog(state.registry_url)
    first = _record(log)
    second = _record(log, severity=Severity.CRITICAL, folder="/runs/2")
    assert first.opened and not second.opened
    assert second.incident.id == first.incident.id
    assert second.incident.occurrences == 2
    assert second.incident.severity is Severity.CRITICAL  # the worst seen is kept
    assert second.incident.evidence_folder == "/runs/1"  # where it started
    assert [n.evidence_folder for n in second.incident.notes] == ["/runs/1", "/runs/2"]

    other_kind = _record(log, kind="quality")
    assert other_kind.opened and other_kind.incident.id != first.incident.id

    log.acknowledge(first.incident.id, note="looking at it", actor="ana")
    assert _record(log).incident.id == first.incident.id  # acknowledged still collects repeats
    resolved = log.resolve(first.incident.id, note="retrained as v4", actor="ana")
    assert resolved.status is IncidentStatus.RESOLVED and resolved.resolved_at is not None
    assert [n.action for n in resolved.notes] == [
        "opened",
        "recurred",
        "acknowledged",
        "recurred",
        "resolved",
    ]
    again = _record(log)
    assert again.opened and again.incident.id not in (first.incident.id, other_kind.incident.id)


def test_resolving_needs_a_note_and_an_unresolved_incident(state):
    log = IncidentLog(state.registry_url)
    incident = _record(log).incident
    with pytest.raises(RegistryError, match="a note saying why is required"):
        log.resolve(incident.id, note="  ", actor="ana")
    log.resolve(incident.id, note="fixed", actor="ana")
    with pytest.raises(RegistryError, match="already resolved"):
        log.resolve(incident.id, note="again", actor="ana")
    with pytest.raises(RegistryError, match="no incident with id 999"):
        log.get(999)


def test_cli_lists_shows_and_resolves(state):
    from modelcycle.cli import app

    incident = _record(IncidentLog(state.registry_url)).incident
    runner = CliRunner()
    listed = runner.invoke(app, ["incidents", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.output)
    assert [(r["id"], r["kind"], r["status"]) for r in rows] == [(incident.id, "drift", "open")]

    shown = runner.invoke(app, ["incidents", "show", str(incident.id)])
    assert shown.exit_code == 0 and "/runs/1" in shown.output

    resolved = runner.invoke(
        app, ["incidents", "resolve", str(incident.id), "--note", "retrained", "--actor", "ana"]
    )
    assert resolved.exit_code == 0, resolved.output
    record = IncidentLog(state.registry_url).get(incident.id)
    assert record.status is IncidentStatus.RESOLVED
    assert (record.notes[-1].actor, record.notes[-1].note) == ("ana", "retrained")

    missing = runner.invoke(app, ["incidents", "resolve", "42", "--note", "x"])
    assert missing.exit_code == 1 and "no incident with id 42" in missing.output

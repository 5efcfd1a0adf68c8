"""`modelcycle incidents`: what monitoring opened, and the notes that move it on."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from modelcycle.cli._console import console, fail, print_table
from modelcycle.errors import ModelcycleError

if TYPE_CHECKING:
    from modelcycle.registry import IncidentLog

incidents_app = typer.Typer(help="Incidents opened by monitoring.", no_args_is_help=True)


def _log() -> IncidentLog:
    from modelcycle.registry import IncidentLog
    from modelcycle.settings import get_settings

    return IncidentLog(get_settings().registry_url)


@incidents_app.command("list")
def list_incidents(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    open_only: Annotated[bool, typer.Option("--open", help="Hide resolved ones.")] = False,
) -> None:
    """Every incident, oldest first."""
    try:
        found = _log().list(model, include_resolved=not open_only)
    except ModelcycleError as exc:
        fail(str(exc))
    if as_json:
        print(json.dumps([i.to_dict() for i in found], indent=2))
        return
    table = Table("id", "model", "v", "kind", "severity", "status", "seen", "opened (UTC)")
    for i in found:
        table.add_row(
            str(i.id),
            i.model_name,
            str(i.version),
            i.kind,
            i.severity.value,
            i.status.value,
            str(i.occurrences),
            i.opened_at.strftime("%Y-%m-%d %H:%M"),
        )
    print_table(table)


@incidents_app.command("show")
def show_incident(
    incident_id: Annotated[int, typer.Argument(help="Incident id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
) -> None:
    """One incident with its history of notes and evidence folders."""
    try:
        incident = _log().get(incident_id)
    except ModelcycleError as exc:
        fail(str(exc))
    data = incident.to_dict()
    if as_json:
        print(json.dumps(data, indent=2))
        return
    notes = data.pop("notes")
    for key, value in data.items():
        console.print(f"[bold]{key}[/]: {value}", highlight=False)
    for note in notes:
        console.print(
            f"- {note['at']} {note['action']} by {note['actor']}: {note['note']}"
            + (f" (evidence {note['evidence_folder']})" if note["evidence_folder"] else ""),
            highlight=False,
        )


def _move(incident_id: int, note: str, actor: str, resolve: bool) -> None:
    try:
        log = _log()
        if resolve:
            incident = log.resolve(incident_id, note=note, actor=actor)
        else:
            incident = log.acknowledge(incident_id, note=note, actor=actor)
    except ModelcycleError as exc:
        fail(str(exc))
    console.print(f"incident #{incident.id}: {incident.status.value}")


@incidents_app.command("resolve")
def resolve_incident(
    incident_id: Annotated[int, typer.Argument(help="Incident id.")],
    note: Annotated[str, typer.Option(help="What was done, or why no action is needed.")],
    actor: Annotated[str, typer.Option(help="Who resolves it.")] = "cli",
) -> None:
    """Close an incident; a later drift on the model opens a new one."""
    _move(incident_id, note, actor, resolve=True)


@incidents_app.command("acknowledge")
def acknowledge_incident(
    incident_id: Annotated[int, typer.Argument(help="Incident id.")],
    note: Annotated[str, typer.Option(help="Who is on it, what happens next.")],
    actor: Annotated[str, typer.Option(help="Who acknowledges it.")] = "cli",
) -> None:
    """Someone is on it; repeats still add to it rather than opening another."""
    _move(incident_id, note, actor, resolve=False)

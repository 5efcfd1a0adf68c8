"""`modelcycle monitor` and `modelcycle incidents`: registered on the main app in cli.py."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from modelcycle.errors import ModelcycleError

incidents_app = typer.Typer(help="Incidents opened by monitoring.", no_args_is_help=True)

# Survey years kept back from training; the GSS ran every two years then.
DEMO_WINDOW_YEARS = [2008, 2010, 2012, 2014, 2016, 2018]


def _cli() -> Any:
    from modelcycle.cli import _app as cli

    return cli


def _log():
    from modelcycle.registry import IncidentLog
    from modelcycle.settings import get_settings

    return IncidentLog(get_settings().registry_url)


def run_monitoring(model: str, window: str, **kwargs: Any) -> dict[str, Any]:
    """Run the flow on the temporary (or configured) Prefect server."""
    from modelcycle.cli._runtime import prepare_prefect_env

    prepare_prefect_env()
    from flows.monitoring import monitoring

    with _cli()._embedded_server_settings():
        return monitoring(model_name=model, window=window, **kwargs)


def print_outcome(outcome: dict[str, Any]) -> None:
    console = _cli().console
    colour = {"ok": "green", "warning": "yellow", "drift": "red"}.get(outcome["status"], "blue")
    share = outcome["share_drifted"]
    shown = "-" if share is None else f"{share:.0%}"
    console.print(
        f"[bold]{outcome['model']} v{outcome['version']}[/]: "
        f"[bold {colour}]{outcome['status']}[/] (features drifted {shown}: "
        f"{', '.join(outcome['drifted_columns']) or 'none'})"
    )
    quality = outcome.get("quality") or {}
    realised, estimated = quality.get("realised") or {}, quality.get("estimated") or {}
    for metric in ("accuracy", "roc_auc"):
        if metric in realised or metric in estimated:
            r, e = realised.get(metric), estimated.get(metric)
            console.print(
                f"  {metric}: realised {'-' if r is None else f'{r:.3f}'}, "
                f"estimated without labels {'-' if e is None else f'{e:.3f}'}"
            )
    for reason in outcome["reasons"]:
        console.print(f"  - {reason}", highlight=False)
    for incident in outcome.get("incidents") or []:
        verb = "opened" if incident["opened"] else f"updated ({incident['occurrences']} times)"
        console.print(f"  [bold red]incident #{incident['id']}[/] ({incident['kind']}) {verb}")
    if outcome.get("event_id"):
        console.print(f"  event modelcycle.model.drift-detected emitted ({outcome['event_id']})")
    if outcome.get("html_report"):
        console.print(f"  report: {outcome['html_report']}", highlight=False)


def monitor(
    window: Annotated[str, typer.Argument(help="CSV/Parquet file or glob (quote it).")],
    model: Annotated[str, typer.Option(help="Model whose champion is monitored.")] = "gss-income",
    latest_only: Annotated[bool, typer.Option(help="Only the newest matching file.")] = False,
    start: Annotated[float | None, typer.Option(help="Time column from (inclusive).")] = None,
    end: Annotated[float | None, typer.Option(help="Time column up to (inclusive).")] = None,
    config: Annotated[str | None, typer.Option(help="Take `monitoring` from this config.")] = None,
) -> None:
    """Run the monitoring flow on one window."""
    from modelcycle.config import TimeRange

    time_range = None if start is None and end is None else TimeRange(start=start, end=end)
    try:
        outcome = run_monitoring(
            model, window, time_range=time_range, latest_only=latest_only, config_path=config
        )
    except ModelcycleError as exc:
        _cli()._fail(str(exc))
    print_outcome(outcome)


def demo_monitoring(model: str) -> None:
    """The demo's last act: the unseen survey years arrive one window at a time."""
    from modelcycle.data import write_year_windows
    from modelcycle.settings import get_settings

    console = _cli().console
    paths = write_year_windows(get_settings().data_dir, DEMO_WINDOW_YEARS)
    for path in paths:
        console.rule(f"monitor {path.name}")
        print_outcome(run_monitoring(model, str(path)))
    console.rule("incidents")
    list_incidents(as_json=False)


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
        _cli()._fail(str(exc))
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
    _cli().console.print(table)


@incidents_app.command("show")
def show_incident(
    incident_id: Annotated[int, typer.Argument(help="Incident id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
) -> None:
    """One incident with its history of notes and evidence folders."""
    try:
        incident = _log().get(incident_id)
    except ModelcycleError as exc:
        _cli()._fail(str(exc))
    data = incident.to_dict()
    if as_json:
        print(json.dumps(data, indent=2))
        return
    console = _cli().console
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
        _cli()._fail(str(exc))
    _cli().console.print(f"incident #{incident.id}: {incident.status.value}")


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

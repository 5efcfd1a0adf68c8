"""`modelcycle records`: the event log over a period (JSON Lines), and retention."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from modelcycle.cli._console import console, fail, open_incident_log, open_registry
from modelcycle.errors import ModelcycleError

records_app = typer.Typer(
    help="The event log (predictions, feedback, audit, incidents, monitoring) and retention.",
    no_args_is_help=True,
)


def _moment(option: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ModelcycleError(
            f"{option} {value!r}: expected an ISO 8601 date or time, e.g. 2026-01-31"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


@records_app.command("export")
def export(
    since: Annotated[str | None, typer.Option(help="From this time (ISO 8601, UTC).")] = None,
    until: Annotated[str | None, typer.Option(help="Up to this time, excluded.")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of printing.")
    ] = None,
) -> None:
    """Every recorded event in the period as JSON Lines (format in the README)."""
    from modelcycle.cli._trace import log_root
    from modelcycle.records import export_events

    try:
        start, end = _moment("--since", since), _moment("--until", until)
        log = open_incident_log()
        events = export_events(
            open_registry(), log.list() if log is not None else [], log_root(), start, end
        )
        lines = [json.dumps(e, default=str, ensure_ascii=False) for e in events]
    except ModelcycleError as exc:
        fail(str(exc))
    if output is None:
        for line in lines:
            print(line)
    else:
        output.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        console.print(f"{len(lines)} events written to {output}", highlight=False)


@records_app.command("retain")
def retain(
    model: Annotated[str | None, typer.Option("--model", help="One model (default: all).")] = None,
) -> None:
    """Run the retention flow now: remove prediction-log partitions older than
    MODELCYCLE_LOG_RETENTION_DAYS (default 183) and record each removal in the audit log."""
    from modelcycle.cli._console import check_configured_server, embedded_server_settings
    from modelcycle.cli._runtime import prepare_prefect_env

    try:
        open_registry()
        check_configured_server()
        prepare_prefect_env()
        from flows.retention import retention

        with embedded_server_settings():
            reports = retention(model_name=model, actor="cli-retention")
    except ModelcycleError as exc:
        fail(str(exc))
    for r in reports:
        console.print(
            f"{r['model']}: removed {len(r['removed'])} partitions ({r['rows']} records) "
            f"before {r['cutoff']}; kept {r['kept_partitions']}",
            highlight=False,
        )

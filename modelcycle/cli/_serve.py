"""`modelcycle serve`: the prediction service, in the foreground until interrupted.

Options override the `MODELCYCLE_SERVE_*` environment; every default lives in
`modelcycle.serving.ServeSettings`. No Prefect here: the service is a process, not a flow.
"""

from __future__ import annotations

from typing import Annotated

import typer

from modelcycle.cli._console import fail


def serve(
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            metavar="NAME",
            help="Model to serve (repeat for several); default: every model with a champion.",
        ),
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="Interface to bind (default 127.0.0.1: loopback only).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes (default: one per core).", min=1)
    ] = None,
    insecure_no_auth: Annotated[
        bool,
        typer.Option(
            "--insecure-no-auth", help="Answer without a bearer token (local experiments only)."
        ),
    ] = False,
) -> None:
    """Serve the champion of each model over HTTP, logging every answer before it is sent."""
    from pydantic import ValidationError

    from modelcycle.errors import ModelcycleError
    from modelcycle.serving import ENV_PREFIX, read_settings
    from modelcycle.serving import serve as run_service

    try:
        settings = read_settings(
            models=model or None,
            host=host,
            port=port,
            workers=workers,
            insecure_no_auth=insecure_no_auth or None,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        fail(f"serve setting {where} ({ENV_PREFIX}{where.upper()} or --{where}): {first['msg']}")
    try:
        run_service(settings)
    except ModelcycleError as exc:
        fail(str(exc))


log_app = typer.Typer(help="The prediction log the service writes.", no_args_is_help=True)


@log_app.command("compact")
def compact_log(
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            metavar="NAME",
            help="Model whose log to compact (repeat for several); default: every model with "
            "segments on this machine.",
        ),
    ] = None,
    root: Annotated[
        str | None,
        typer.Option(
            help="The log's root (default: MODELCYCLE_SERVE_LOG_ROOT, else the state "
            "folder's predictions/)."
        ),
    ] = None,
) -> None:
    """Move sealed log segments on this machine into date-partitioned Parquet now.

    A running service does this every MODELCYCLE_SERVE_COMPACT_SECONDS; this is for an
    instance that is stopped for good, or a service run with compaction off. Safe beside a
    running service (one compactor per model at a time); exits 1 naming any segment it
    refused as damaged (the rest is compacted).
    """
    from modelcycle.errors import ModelcycleError
    from modelcycle.serving import compact, logged_models, read_settings

    where = read_settings(log_root=root).resolved_log_root
    try:
        names = model or logged_models(where)
        refused: list[str] = []
        for name in names:
            report = compact(where, name)
            open_note = (
                f"; {len(report.still_open)} still being written" if report.still_open else ""
            )
            typer.echo(
                f"{name}: {len(report.segments)} segment(s) into {len(report.parts)} Parquet "
                f"part(s) ({report.predictions:,} predictions, {report.feedback:,} feedback)"
                f"{open_note}"
            )
            refused += report.refused
    except ModelcycleError as exc:
        fail(str(exc))
    if not names:
        typer.echo(f"no prediction log segments under {where}")
    if refused:
        fail(f"{len(refused)} segment(s) refused as damaged and left in place: {refused[0]}")

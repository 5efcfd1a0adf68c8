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

"""`modelcycle service`: a local Prefect server, work pool, deployments and worker.

The process management is in `_server.py`; these commands only choose the folder and port
and print what it does.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated

import typer

from modelcycle.cli._console import console, fail, styled
from modelcycle.errors import ModelcycleError
from modelcycle.settings import DEFAULT_PORT

if TYPE_CHECKING:
    from modelcycle.cli._server import Service

service_app = typer.Typer(
    help="A local Prefect server, work pool, deployments and worker, through Prefect's own "
    "commands (each one is printed).",
    no_args_is_help=True,
)

PortOption = Annotated[int, typer.Option(help="Loopback port of the Prefect server and UI.")]


def _service(port: int) -> Service:
    from modelcycle.cli._server import Service
    from modelcycle.settings import get_settings

    return Service(get_settings().home / "service", port)


def _say(line: str) -> None:
    console.print(line, highlight=False)


@service_app.command("up")
def service_up(
    port: PortOption = DEFAULT_PORT,
    worker: Annotated[bool, typer.Option(help="Also start a process worker.")] = True,
    serve: Annotated[
        bool,
        typer.Option(
            help="Also start the prediction service (`modelcycle serve`); `service down` "
            "stops it too."
        ),
    ] = False,
    serve_port: Annotated[
        int | None,
        typer.Option(help="Port of the prediction service [default: `modelcycle serve`'s]."),
    ] = None,
    serve_model: Annotated[
        list[str] | None,
        typer.Option(
            help="Model the prediction service serves (repeat for several) [default: every "
            "model with a champion]."
        ),
    ] = None,
) -> None:
    """Start a Prefect server (its home under the state folder), create the work pool and the
    crash automation, deploy everything in prefect.yaml, start a worker and, with --serve, the
    prediction service."""
    from modelcycle.cli._server import Serving, start_serving, up

    service = _service(port)
    try:
        up(service, os.environ, _say, worker)
        if serve:
            start_serving(service, Serving(serve_port, tuple(serve_model or ())), os.environ, _say)
    except ModelcycleError as exc:
        fail(str(exc))
    console.print(f"logs and process ids: {service.folder}", highlight=False)


@service_app.command("status")
def service_status(port: PortOption = DEFAULT_PORT) -> None:
    """Is the server (PREFECT_API_URL, or the local one on PORT) answering and accepting our
    credential, does it refuse anonymous requests; are ours running?"""
    from modelcycle.cli._server import (
        AUTH_ENV,
        PROCESSES,
        check_access,
        check_server,
        read_credential,
        recorded_pid,
    )

    service = _service(port)
    api_url = os.environ.get("PREFECT_API_URL") or service.api_url
    try:
        check_server(api_url)
        credential = os.environ.get(AUTH_ENV) or read_credential(service.credential_file)
        locked = check_access(api_url, credential)
    except ModelcycleError as exc:
        fail(str(exc))
    console.print(f"Prefect server at {api_url}: healthy", highlight=False)
    if locked:
        console.print("anonymous requests: refused (HTTP 401)", highlight=False)
    else:
        console.print(
            styled(
                ("warning:", "bold red"),
                " it answers requests without a credential: anyone who can "
                "reach it can run flows on its workers",
            ),
            highlight=False,
        )
    for name in reversed(PROCESSES):
        pid = recorded_pid(service, name)
        console.print(f"{name} started here: {f'pid {pid}' if pid else 'not running'}")


@service_app.command("down")
def service_down(port: PortOption = DEFAULT_PORT) -> None:
    """Stop the prediction service, the worker and the server that `service up` started (by
    their process ids)."""
    from modelcycle.cli._server import down

    down(_service(port), _say)

"""What every command group shares: where output goes, how a failure is told, the registry,
and the settings a flow runs under when no Prefect server is configured.

Imports Prefect only inside `embedded_server_settings`, which runs after the process
environment is prepared.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from modelcycle.registry import Registry

console = Console(soft_wrap=True)  # long paths and hashes stay whole
errors = Console(stderr=True, soft_wrap=True)


def print_table(table: Table) -> None:
    """A boxed table on a terminal (as wide as the terminal); plain aligned columns when the
    output is piped or redirected, where rich would wrap every cell at 80 characters."""
    columns = [[_plain(c.header), *(_plain(cell) for cell in c.cells)] for c in table.columns]
    if console.is_terminal:
        boxed = Table(*columns_headers(table), title=table.title)
        for row in zip(*(cells[1:] for cells in columns), strict=True):
            boxed.add_row(*(Text(cell) for cell in row))  # Text: never read as markup
        console.print(boxed)
        return
    widths = [max(map(len, cells)) for cells in columns]
    for row in zip(*columns, strict=True):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        console.out("  ".join(cells).rstrip(), highlight=False)


def columns_headers(table: Table) -> list[str]:
    return [_plain(c.header) for c in table.columns]


def _plain(cell: object) -> str:
    """Cell text without styling; a plain string is shown as given, never read as markup."""
    if isinstance(cell, Text):
        return cell.plain
    return str(cell).replace("\n", " ")


def fail(message: str) -> NoReturn:
    """One red line a user can act on; the lines after it (every data problem) are kept."""
    first, _, rest = message.partition("\n")
    errors.print(f"[bold red]error:[/] {first}", highlight=False)
    if rest:
        errors.print(rest, highlight=False)
    raise typer.Exit(code=1)


def open_registry() -> Registry:
    """The registry the settings name now, so a test's MODELCYCLE_HOME is honoured."""
    from modelcycle.registry import Registry
    from modelcycle.settings import get_settings

    return Registry(get_settings().registry_url)


def check_configured_server() -> None:
    """A server named by PREFECT_API_URL must answer before a run is attempted."""
    from modelcycle.cli._server import check_server

    api_url = os.environ.get("PREFECT_API_URL")
    if api_url:
        check_server(api_url)


def embedded_server_settings() -> AbstractContextManager[Any]:
    """Without a configured server, flows run on this process's temporary server
    (`_runtime.temporary_server`: it dies with this process and marks what it left unfinished
    Crashed). Heartbeats let a real server mark dead runs as crashed; the temporary server does
    that itself, so they would only cost a thread join of up to 1 s per run (measured)."""
    from prefect.settings import (
        PREFECT_API_AUTH_STRING,
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        temporary_settings,
    )

    from modelcycle.cli._runtime import temporary_server

    if PREFECT_API_URL.value():
        return nullcontext()
    server = temporary_server()
    return temporary_settings(
        {
            PREFECT_API_URL: server.api_url,
            PREFECT_API_AUTH_STRING: server.auth_string,
            PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None,
        }
    )

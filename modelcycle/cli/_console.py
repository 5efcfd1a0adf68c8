"""What every command group shares: where output goes, how a failure is told, the registry,
and the settings a flow runs under when no Prefect server is configured.

Both consoles treat every string as plain text (no rich markup, no emoji codes): reasons,
paths, column names and error messages come from users and files, and `[/ops]` in an audit
reason must print as itself, not crash the command or vanish. Styling is applied only to text
built here, with `styled`.

Imports Prefect only inside `embedded_server_settings`, which runs after the process
environment is prepared.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from modelcycle.cli._runlog import (
    has_tracebacks,
    prefect_console,
    traceback_text,
    write_failure_log,
)
from modelcycle.errors import ModelcycleError

if TYPE_CHECKING:
    import sqlalchemy as sa

    from modelcycle.registry import IncidentLog, Registry, SQLStore

console = Console(soft_wrap=True, markup=False, emoji=False)  # long paths and hashes stay whole
errors = Console(stderr=True, soft_wrap=True, markup=False, emoji=False)

# Version numbers and incident ids are SQL INTEGER columns, 32-bit on PostgreSQL; SQLite
# overflows only past 64 bits, deep inside the driver. Checked where the argument is parsed.
MAX_RECORD_ID = 2**31 - 1
_verbose: list[bool | None] = [None]  # this command's --verbose; None: not given


def styled(*parts: str | tuple[str, str]) -> Text:
    """A line whose plain strings stay exactly as given and whose (text, style) pairs are
    styled: the only way this package adds colour, so no user text is ever parsed."""
    return Text.assemble(*parts)


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


def set_verbose(chosen: bool | None) -> None:
    """Set once per command, before it runs; None leaves the choice to MODELCYCLE_DEBUG."""
    _verbose[0] = chosen


def verbose() -> bool:
    """--verbose on the command line, else MODELCYCLE_DEBUG."""
    from modelcycle.settings import debug_enabled

    return _verbose[0] if _verbose[0] is not None else debug_enabled()


def fail(message: str, unexpected: bool = False) -> NoReturn:
    """One red line a user can act on; the lines after it (every data problem) are kept.

    Called while an exception is handled, the traceback goes to the terminal only with
    --verbose; otherwise, when there is more than the message to see (an `unexpected` error's
    traceback, or Prefect's log of a flow run that failed), it goes to a log file whose path
    is printed.
    """
    first, _, rest = message.partition("\n")
    exc = sys.exc_info()[1]
    if exc is not None and verbose():
        errors.print(traceback_text(exc), end="")
    errors.print(styled(("error:", "bold red"), " ", first), highlight=False)
    if rest:
        errors.print(rest, highlight=False)
    if exc is not None and not verbose():
        path = write_failure_log(exc) if unexpected or has_tracebacks() else None
        if path is not None:
            errors.print(
                f"full log with the traceback: {path} (--verbose or MODELCYCLE_DEBUG=1 "
                "prints it here)",
                highlight=False,
            )
    raise typer.Exit(code=1)


class NoRegistryError(ModelcycleError):
    """The registry URL names no existing registry; nothing was created there."""


def open_registry() -> Registry:
    """The registry the settings name now, so a test's MODELCYCLE_HOME is honoured.

    Only an existing registry is opened: every command that calls this reads or moves what is
    recorded, and a mistyped URL must not leave a new, empty database behind (SQLite creates
    the file, and the registry its folders and tables, on first use).
    """
    from modelcycle.registry import Registry
    from modelcycle.settings import get_settings

    registry = Registry(get_settings().registry_url)  # parses the URL; connects on first use
    if not _existing_tables(registry):  # any of them: a newer version may add tables on use
        raise NoRegistryError(f"{_named_url()}: not a modelcycle registry (it has no tables)")
    return registry


def open_incident_log() -> IncidentLog | None:
    """The incident log in the registry's database; None while monitoring has opened no
    incident (its tables are created by the first monitoring run, never by a read)."""
    from modelcycle.registry import IncidentLog
    from modelcycle.settings import get_settings

    log = IncidentLog(get_settings().registry_url)
    return log if _existing_tables(log) else None


def _named_url() -> str:
    """The registry URL as the user set it (password hidden), or the default's path."""
    import sqlalchemy as sa

    from modelcycle.settings import REGISTRY_URL_ENV, get_settings

    url = sa.make_url(get_settings().registry_url).render_as_string(hide_password=True)
    return f"{REGISTRY_URL_ENV}={url}" if os.environ.get(REGISTRY_URL_ENV) else f"registry {url}"


def _existing_tables(store: SQLStore) -> set[sa.Table]:
    """The store's tables that exist, found without creating anything: a SQLite file that does
    not exist is not opened at all (connecting would create it)."""
    import sqlalchemy as sa
    from sqlalchemy.exc import DBAPIError

    url = sa.make_url(store.url)
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        in_memory = database in ("", ":memory:") or database.startswith("file:")
        if not in_memory and not Path(database).expanduser().is_file():
            raise NoRegistryError(
                f"{_named_url()}: no registry database at {Path(database).expanduser()} "
                "(nothing was recorded there yet, or the URL is mistyped); nothing was created"
            )
    try:
        present = set(sa.inspect(store.engine).get_table_names())
    except DBAPIError as exc:
        raise NoRegistryError(f"{_named_url()}: cannot read the registry: {exc.orig}") from None
    return {table for table in store.tables if table.name in present}


def check_configured_server() -> None:
    """A server named by PREFECT_API_URL must answer before a run is attempted."""
    from modelcycle.cli._server import check_server

    api_url = os.environ.get("PREFECT_API_URL")
    if api_url:
        check_server(api_url)


@contextmanager
def embedded_server_settings() -> Iterator[None]:
    """How a flow runs from the command line: Prefect's console output without traceback walls
    (kept for the log file and --verbose), and, without a configured server, on this process's
    temporary server (`_runtime.temporary_server`: it dies with this process and marks what it
    left unfinished Crashed). Heartbeats let a real server mark dead runs as crashed; the
    temporary server does that itself, so they would only cost a thread join of up to 1 s per
    run (measured).
    """
    from prefect.settings import (
        PREFECT_API_AUTH_STRING,
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        temporary_settings,
    )

    from modelcycle.cli._runtime import temporary_server

    with prefect_console(show_tracebacks=verbose()):
        if PREFECT_API_URL.value():
            yield
            return
        server = temporary_server()
        with temporary_settings(
            {
                PREFECT_API_URL: server.api_url,
                PREFECT_API_AUTH_STRING: server.auth_string,
                PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None,
            }
        ):
            yield

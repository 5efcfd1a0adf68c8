"""Tracebacks out of the terminal, into a file: what a failed command shows and keeps.

A flow run that fails makes Prefect log the exception's traceback twice (task and flow), 60-400
lines before the one line that says what was wrong. While the command line runs a flow, the
tracebacks are left out of Prefect's console output (unless --verbose) and kept, with every
log line of the run, so a failure can write them to a log file and print its path. Prefect's
API log handler is not touched: the run's own logs on the server keep the tracebacks.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

LOG_FOLDER = "logs"
KEPT_LOGS = 50  # failure logs kept in the state folder; older ones are removed
_FORMAT = "%(asctime)s | %(levelname)-7s | %(name)s - %(message)s"


class _Kept(logging.Handler):
    """Every record logged while a command runs its flows, formatted with its traceback."""

    def __init__(self) -> None:
        super().__init__(level=logging.NOTSET)
        self.setFormatter(logging.Formatter(_FORMAT))
        self.lines: list[str] = []
        self.tracebacks = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:
            self.handleError(record)
        if record.exc_info:
            self.tracebacks += 1


class _WithoutTraceback(logging.Formatter):
    """Prefect's own formatter, minus the exception's traceback (its message stays)."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


_kept = _Kept()


def reset() -> None:
    """A new command: nothing kept from an earlier one (tests run many in one process)."""
    _kept.lines.clear()
    _kept.tracebacks = 0


def has_tracebacks() -> bool:
    return _kept.tracebacks > 0


@contextmanager
def prefect_console(show_tracebacks: bool) -> Iterator[None]:
    """While a flow runs: keep every log record, print Prefect's console lines to this
    process's stderr as it is now, and without tracebacks unless asked for."""
    from prefect.logging.handlers import PrefectConsoleHandler

    root = logging.getLogger()
    consoles = [h for h in root.handlers if isinstance(h, PrefectConsoleHandler)]
    # Prefect's own format names the flow and task runs; kept lines read like the console's.
    prefect_format = consoles[0].formatter if consoles else None
    _kept.setFormatter(prefect_format or logging.Formatter(_FORMAT))
    with ExitStack() as restore:
        for handler in consoles:
            restore.enter_context(_redirected(handler, show_tracebacks))
        root.addHandler(_kept)
        restore.callback(root.removeHandler, _kept)
        yield


@contextmanager
def _redirected(handler: Any, show_tracebacks: bool) -> Iterator[None]:
    """Prefect's handler bound sys.stderr when logging was set up; a command's stderr may have
    been replaced since (a test runner captures it), and the lines belong with the command's."""
    formatter, stream, file = handler.formatter, handler.stream, handler.console.file
    if not show_tracebacks and formatter is not None:
        handler.setFormatter(_WithoutTraceback(formatter))
    handler.stream = handler.console.file = sys.stderr
    try:
        yield
    finally:
        handler.setFormatter(formatter)
        handler.stream, handler.console.file = stream, file


def traceback_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


def write_failure_log(exc: BaseException) -> Path | None:
    """The kept log lines and the command's own traceback, in a new file only its owner can
    read; None when it cannot be written (the one-line error still stands on its own)."""
    from modelcycle.settings import get_settings

    folder = get_settings().home / LOG_FOLDER
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    path = folder / f"error-{stamp}-{os.getpid()}.log"
    text = "\n".join(
        [
            f"modelcycle failed at {stamp} UTC: {type(exc).__name__}: {exc}",
            *(["", "Prefect's log of the run:", *_kept.lines] if _kept.lines else []),
            "",
            "The command's traceback:",
            traceback_text(exc),
        ]
    )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
    except OSError:
        return None
    _prune(folder)
    return path


def _prune(folder: Path) -> None:
    logs = sorted(folder.glob("error-*.log"))
    for old in logs[:-KEPT_LOGS]:
        old.unlink(missing_ok=True)

"""`modelcycle privacy erase`: remove one data subject from the prediction log and feedback."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from modelcycle.cli._console import console, fail, open_registry
from modelcycle.errors import ModelcycleError

privacy_app = typer.Typer(help="Data-subject requests on the prediction log.", no_args_is_help=True)


def _where(raw: str) -> tuple[str, str]:
    column, sep, value = raw.partition("=")
    if not sep or not column.strip() or not value:
        raise ModelcycleError(f"--where {raw!r}: expected COLUMN=VALUE, e.g. customer_id=C-1042")
    return column.strip(), value


@privacy_app.command("erase")
def erase(
    where: Annotated[str, typer.Option("--where", help="COLUMN=VALUE (a declared subject key).")],
    model: Annotated[str, typer.Option("--model", help="The model whose log holds the person.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
) -> None:
    """Erase every logged prediction (and its feedback) of one person; verify and audit it by a
    keyed hash, never the value. Exit 1 if records remain (a live segment: retry later)."""
    from modelcycle.cli._audit import cli_actor
    from modelcycle.cli._trace import log_root
    from modelcycle.records import erase_subject
    from modelcycle.settings import privacy_key

    try:
        column, value = _where(where)
        report = erase_subject(
            open_registry(), log_root(), model, column, value, privacy_key(), actor=cli_actor()
        )
    except ModelcycleError as exc:
        fail(str(exc))
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        console.print(
            f"{model}: erased {report.predictions} predictions and {report.feedback} feedback "
            f"records of subject {report.subject} ({report.column}); "
            + ("verified: none left" if report.complete else f"{report.remaining} remain"),
            highlight=False,
        )
        console.print(report.note, highlight=False)
    if not report.complete:
        raise typer.Exit(code=1)

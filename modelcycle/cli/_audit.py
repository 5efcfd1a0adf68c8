"""`modelcycle audit`: check that the audit log is the history that was written.

Each model's entries form a hash chain (`modelcycle.registry.ChainReport`); `verify` walks it
and names the first entry that does not fit, and prints the chain's head hash, which anyone can
keep elsewhere to notice later that the newest entries were cut off or the chain recomputed.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from modelcycle.cli._console import console, errors, fail, open_registry, styled
from modelcycle.errors import ModelcycleError

audit_app = typer.Typer(
    help="Check the audit log's hash chain (tamper evidence).", no_args_is_help=True
)


@audit_app.command("verify")
def verify(
    name: Annotated[str | None, typer.Argument(help="Model name (default: every model).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
) -> None:
    """Walk each model's audit chain; exit 1 naming the first broken entry, if any."""
    try:
        registry = open_registry()
        reports = registry.verify_audit(name)
    except ModelcycleError as exc:
        fail(str(exc))
    if registry.guards_restored:
        errors.print(
            styled(
                ("warning:", "bold yellow"),
                " the audit log's append-only triggers were missing (removed outside "
                "modelcycle) and have been put back",
            ),
            highlight=False,
        )
    if as_json:
        print(json.dumps([r.to_dict() for r in reports], indent=2))
    else:
        for report in reports:
            if report.intact:
                console.print(report.summary(), highlight=False)
            else:
                errors.print(
                    styled(("broken:", "bold red"), f" {report.summary()}"), highlight=False
                )
        if not reports:
            console.print("no audit entries yet", highlight=False)
    if not all(r.intact for r in reports):
        raise typer.Exit(code=1)


def cli_actor() -> str:
    """Who a command records in the audit log: the operating-system user."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"

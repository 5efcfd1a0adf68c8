"""The one place the `modelcycle` command is assembled from its command groups, and where a
failure no command caught becomes one line instead of a traceback.

Prefect is imported only inside the commands that run flows, after the offline settings
and the state folder's Prefect home are in the environment.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from modelcycle.cli._audit import audit_app
from modelcycle.cli._config import config_app
from modelcycle.cli._console import fail, set_verbose
from modelcycle.cli._demo import demo
from modelcycle.cli._docs import bom, docs, score
from modelcycle.cli._experiments import canary, deprecate, experiment, experiments, shadow
from modelcycle.cli._incidents import incidents_app
from modelcycle.cli._init import init
from modelcycle.cli._models import models_app
from modelcycle.cli._monitor import monitor
from modelcycle.cli._privacy import privacy_app
from modelcycle.cli._records import records_app
from modelcycle.cli._reproduce import reproduce
from modelcycle.cli._runlog import reset as reset_run_log
from modelcycle.cli._serve import log_app, serve
from modelcycle.cli._service import service_app
from modelcycle.cli._trace import trace
from modelcycle.cli._train import train
from modelcycle.errors import ModelcycleError

VERBOSE = "--verbose"


class _Command(TyperGroup):
    """Every command runs inside `invoke`: an error no command caught gets the same one line
    (and log file) as the ones they catch."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        """--verbose is accepted anywhere before `--`, as people type it after the command."""
        end = args.index("--") if "--" in args else len(args)
        if VERBOSE in args[:end]:
            args = [VERBOSE, *(a for a in args[:end] if a != VERBOSE), *args[end:]]
        return super().parse_args(ctx, args)

    def invoke(self, ctx: typer.Context) -> Any:
        reset_run_log()
        set_verbose(None)
        try:
            return super().invoke(ctx)
        except (typer.TyperException, typer.Exit, typer.Abort):  # usage errors, exits
            raise
        except ModelcycleError as exc:
            fail(str(exc))
        except Exception as exc:
            fail(f"unexpected {type(exc).__name__}: {exc}", unexpected=True)


app = typer.Typer(
    cls=_Command,
    help="The whole life of a machine-learning model on Prefect.",
    no_args_is_help=True,
    # A traceback's local variables can hold rows of data and credentials.
    pretty_exceptions_show_locals=False,
)
models_app.command("reproduce")(reproduce)
models_app.command("score")(score)
models_app.command("bom")(bom)
app.add_typer(models_app, name="models")
app.add_typer(config_app, name="config")
app.add_typer(service_app, name="service")
app.add_typer(incidents_app, name="incidents")
app.add_typer(audit_app, name="audit")
app.add_typer(records_app, name="records")
app.add_typer(privacy_app, name="privacy")
app.add_typer(log_app, name="log")
app.command("monitor")(monitor)
app.command("demo")(demo)
app.command("train")(train)
app.command("init")(init)
app.command("serve")(serve)
app.command("experiment")(experiment)
models_app.command("shadow")(shadow)
models_app.command("canary")(canary)
models_app.command("deprecate")(deprecate)
models_app.command("experiments")(experiments)
app.command("trace")(trace)
app.command("docs")(docs)


@app.callback()
def _options(
    verbose: Annotated[
        bool,
        typer.Option(
            VERBOSE,
            help="On failure, print the traceback (and Prefect's) instead of the path of the log "
            "file that keeps it; MODELCYCLE_DEBUG=1 does the same.",
        ),
    ] = False,
) -> None:
    set_verbose(verbose or None)


def main() -> None:
    app()

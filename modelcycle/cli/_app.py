"""The one place the `modelcycle` command is assembled from its command groups.

Prefect is imported only inside the commands that run flows, after the offline settings
and the state folder's Prefect home are in the environment.
"""

from __future__ import annotations

import sys

import typer

from modelcycle.cli._config import config_app
from modelcycle.cli._console import errors
from modelcycle.cli._demo import demo
from modelcycle.cli._incidents import incidents_app
from modelcycle.cli._init import init
from modelcycle.cli._models import models_app
from modelcycle.cli._monitor import monitor
from modelcycle.cli._serve import serve
from modelcycle.cli._service import service_app
from modelcycle.cli._train import train
from modelcycle.errors import ModelcycleError

app = typer.Typer(
    help="The whole life of a machine-learning model on Prefect.", no_args_is_help=True
)
app.add_typer(models_app, name="models")
app.add_typer(config_app, name="config")
app.add_typer(service_app, name="service")
app.add_typer(incidents_app, name="incidents")
app.command("monitor")(monitor)
app.command("demo")(demo)
app.command("train")(train)
app.command("init")(init)
app.command("serve")(serve)


def main() -> None:
    try:
        app()
    except ModelcycleError as exc:  # anything a command did not catch itself
        errors.print(f"error: {exc}", highlight=False)
        sys.exit(1)

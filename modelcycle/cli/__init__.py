"""The `modelcycle` command, and the local Prefect service it starts and stops.

The only package that imports Prefect: it sets Prefect's environment first
(`prepare_prefect_env`) and imports flows afterwards, inside each command.
"""

from modelcycle.cli._app import app, main
from modelcycle.cli._runtime import prepare_prefect_env
from modelcycle.cli._server import is_running

__all__ = ["app", "is_running", "main", "prepare_prefect_env"]

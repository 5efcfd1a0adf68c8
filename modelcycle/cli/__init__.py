"""The `modelcycle` command, and the local Prefect service it starts and stops.

The only package that imports Prefect: it sets Prefect's environment first
(`prepare_prefect_env`) and imports flows afterwards, inside each command.
"""

from modelcycle.cli._app import app, main
from modelcycle.cli._runtime import prepare_prefect_env
from modelcycle.cli._server import (
    AUTH_ENV,
    CLIENT_ENV,
    POOL_TEMPLATE_FILE,
    basic_auth_header,
    ensure_credential,
    is_running,
    server_security_env,
)

__all__ = [
    "AUTH_ENV",
    "CLIENT_ENV",
    "POOL_TEMPLATE_FILE",
    "app",
    "basic_auth_header",
    "ensure_credential",
    "is_running",
    "main",
    "prepare_prefect_env",
    "server_security_env",
]

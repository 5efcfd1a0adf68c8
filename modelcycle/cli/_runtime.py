"""Process environment for Prefect, set before Prefect is first imported.

Prefect reads its settings at import, so the CLI calls `prepare_prefect_env()` first and
imports flows afterwards. Values a user already exported are left alone.
"""

from __future__ import annotations

import os

from modelcycle.settings import Settings, get_settings

PROCESS_DEFAULTS = {
    # No internet: telemetry would only log connection errors.
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    # A fresh SQLite database on 2 cores takes 10-18 s; the default 20 s was hit once.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}


def prepare_prefect_env(settings: Settings | None = None) -> Settings:
    """Offline defaults, and Prefect's home under the state folder unless a server is configured."""
    settings = settings or get_settings()
    for key, value in PROCESS_DEFAULTS.items():
        os.environ.setdefault(key, value)
    if "PREFECT_API_URL" not in os.environ and "PREFECT_HOME" not in os.environ:
        settings.prefect_home.mkdir(parents=True, exist_ok=True)
        os.environ["PREFECT_HOME"] = str(settings.prefect_home)
    return settings

"""Process environment for Prefect, set before Prefect is first imported, and the temporary
server a command runs its flows on when no Prefect server is configured.

Prefect reads its settings at import, so the CLI calls `prepare_prefect_env()` first and
imports flows afterwards. Values a user already exported are left alone.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from modelcycle.cli._server import AUTH_ENV, Service, ServiceError, read_credential
from modelcycle.settings import Settings, get_settings

PROCESS_DEFAULTS = {
    # No internet: telemetry would only log connection errors.
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    # A fresh SQLite database on 2 cores takes 10-18 s; the default 20 s was hit once.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def prepare_prefect_env(settings: Settings | None = None) -> Settings:
    """Offline defaults, Prefect's home under the state folder unless a server is configured,
    and the local service's credential for a loopback server when none is exported."""
    settings = settings or get_settings()
    for key, value in PROCESS_DEFAULTS.items():
        os.environ.setdefault(key, value)
    api_url = os.environ.get("PREFECT_API_URL")
    if api_url is None and "PREFECT_HOME" not in os.environ:
        settings.prefect_home.mkdir(parents=True, exist_ok=True)
        os.environ["PREFECT_HOME"] = str(settings.prefect_home)
    if api_url and AUTH_ENV not in os.environ and urlsplit(api_url).hostname in LOOPBACK_HOSTS:
        # Never sent anywhere but loopback: the credential opens this machine's service only.
        credential = read_credential(Service(settings.home / "service").credential_file)
        if credential is not None:
            os.environ[AUTH_ENV] = credential
    return settings


@dataclass(frozen=True)
class TemporaryServer:
    """A Prefect server private to this process: a random loopback port and credential."""

    api_url: str
    auth_string: str
    pid: int


_server: TemporaryServer | None = None


def temporary_server() -> TemporaryServer:
    """This process's temporary server, started on first use.

    It replaces Prefect's own (started by the first client call, stopped only by an atexit
    hook): `modelcycle.cli._temporary_server` watches this process and, when it dies however
    it dies, marks the flow runs it left unfinished `Crashed` and stops.
    """
    global _server
    if _server is None or not _alive(_server.pid):
        _server = _start_temporary_server()
    return _server


def _start_temporary_server(attempts: int = 3) -> TemporaryServer:
    from prefect.settings import get_current_settings

    auth_string = f"modelcycle:{secrets.token_urlsafe(24)}"
    timeout = float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120"))
    env = {
        **os.environ,
        **get_current_settings().to_environment_variables(exclude_unset=True),
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
        "PREFECT_SERVER_API_AUTH_STRING": auth_string,
        "MODELCYCLE_TEMPORARY_SERVER_PARENT": str(os.getpid()),
    }
    for key in ("PREFECT_API_URL", AUTH_ENV):
        env.pop(key, None)
    # Its errors go to a log, not to this command's stderr: it outlives the command by up to
    # SHUTDOWN_GRACE_SECONDS, and would hold a caller's pipe open and write after the prompt.
    log_path = Path(get_current_settings().home) / "temporary-server.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    last = ""
    for _ in range(attempts):
        port = _free_port()
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "modelcycle.cli._temporary_server", str(port)],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        api_url = f"http://127.0.0.1:{port}/api"
        if _wait_healthy(process, api_url, timeout):
            return TemporaryServer(api_url, auth_string, process.pid)
        last = f"exited {process.returncode}" if process.poll() is not None else "no answer"
        if process.poll() is None:
            process.kill()
            process.wait()
    raise ServiceError(
        f"the temporary Prefect server did not start ({last} after {timeout:.0f} s; its log: "
        f"{log_path}); PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS raises the wait"
    )


def _wait_healthy(process: subprocess.Popen[bytes], api_url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2) as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            try:
                if http.get(f"{api_url}/health").status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
    return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _alive(pid: int) -> bool:
    from modelcycle.cli._server import is_running

    return is_running(pid)

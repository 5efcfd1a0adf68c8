"""A real Prefect server, work pool, deployments and worker for end-to-end tests.

Not the test harness: `prefect server start` in its own process (scheduler, events, automations,
UI), deployed with `prefect --no-prompt deploy --all` from the repository root, runs executed by
`prefect worker start`. Every process is started in its own session and stopped by its process
group id; every wait has a deadline.

Secured as `modelcycle service up` secures it (the same settings, from `modelcycle.cli`): a
credential made by the service's own helper, sent by every client; CSRF on; CORS for the UI's
own origin only.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
POOL = "modelcycle-process"
FINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.5) -> T:
    """Poll until `check` returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def stop_process(proc: subprocess.Popen[Any], grace: float = 15.0) -> None:
    """SIGTERM the process group, then SIGKILL it if it is still there after `grace`."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGINT, 5.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@dataclass
class LiveService:
    """One server and its environment; `state` is the MODELCYCLE_HOME the worker uses."""

    root: Path
    port: int
    state: Path
    processes: list[subprocess.Popen[Any]] = field(default_factory=list)
    configs: dict[str, Path] = field(default_factory=dict)
    worker: subprocess.Popen[Any] | None = None
    server: subprocess.Popen[Any] | None = None
    database_url: str | None = None  # the server's own database; SQLite in its home if None
    credential: str = ""  # "user:password", made in `start_server`

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of every CLI call and the worker: this server, offline, no TTY."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MODELCYCLE_"))}
        from modelcycle.cli import AUTH_ENV, CLIENT_ENV

        env.update(CLIENT_ENV)
        env.update(
            {AUTH_ENV: self.credential},
            PREFECT_HOME=str(self.root / "client-home"),
            PREFECT_API_URL=self.api_url,
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            DO_NOT_TRACK="1",
            MODELCYCLE_HOME=str(self.state),
            MODELCYCLE_TRAINING_THREADS="1",
            PREFECT_WORKER_QUERY_SECONDS="1",
            PREFECT_WORKER_PREFETCH_SECONDS="5",
            PREFECT_CLI_WRAP_LINES="false",
            COLUMNS="200",
            PWD=str(REPO),
        )
        env.update(extra)
        return env

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[Any]:
        log = (self.root / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            args,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, stopped by id
        )
        log.close()
        self.processes.append(proc)
        return proc

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def prefect(
        self, *args: str, timeout: float = 120, check: bool = True, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """Run Prefect's own CLI against this server."""
        result = subprocess.run(
            [str(BIN / "prefect"), *args],
            cwd=REPO,
            env=self.env(**env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"prefect {' '.join(args)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def start_server(self) -> None:
        """Start `prefect server start`; `wait_healthy` waits for it (other work can go between)."""
        from modelcycle.cli import ensure_credential, server_security_env

        self.credential = ensure_credential(self.root / "service" / "auth-string")
        env = self.env(PREFECT_HOME=str(self.root / "server-home"))
        env.update(server_security_env(self.port, self.credential))
        env.pop("PREFECT_API_URL")
        if self.database_url:
            env["PREFECT_API_DATABASE_CONNECTION_URL"] = self.database_url
        self.server = self.start("server", [str(BIN / "prefect"), "server", "start"], env)

    def wait_healthy(self, timeout: float = 120) -> None:
        import httpx

        server = self.server
        assert server is not None

        def healthy() -> bool:
            if server.poll() is not None:
                raise RuntimeError(
                    f"prefect server exited {server.returncode}:\n{self.log('server')}"
                )
            try:
                return httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, timeout, "the Prefect server to answer /api/health")

    def create_pool(self) -> None:
        """The work pool with the service's locked base job template."""
        from modelcycle.cli import POOL_TEMPLATE_FILE

        self.prefect(
            "work-pool",
            "create",
            POOL,
            "--type",
            "process",
            "--base-job-template",
            POOL_TEMPLATE_FILE,
        )

    def start_worker(self, name: str = "worker") -> subprocess.Popen[Any]:
        args = [str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--name", name]
        self.worker = self.start(name, args, self.env())
        return self.worker

    def stop_all(self) -> None:
        for proc in reversed(self.processes):
            stop_process(proc)


@contextmanager
def server_database(postgres_url: str | None) -> Iterator[str | None]:
    """A scratch PostgreSQL database for the Prefect server when a server URL is given.

    Under load the server's default SQLite database answers "database is locked" now and then
    (seen here: a UI request failed that way); PostgreSQL is what a team runs anyway.
    """
    if not postgres_url:
        yield None
        return
    import uuid

    import sqlalchemy as sa

    name = f"prefect_e2e_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        url = sa.make_url(postgres_url).set(drivername="postgresql+asyncpg", database=name)
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def live_service(root: Path, postgres_url: str | None = None) -> Iterator[LiveService]:
    with server_database(postgres_url) as database_url:
        service = LiveService(
            root=root, port=free_port(), state=root / "state", database_url=database_url
        )
        try:
            service.start_server()
            yield service
        finally:
            service.stop_all()


def client(service: LiveService) -> Any:
    """A synchronous Prefect client bound to this server with its credential, whatever the
    session's settings."""
    from prefect.client.orchestration import SyncPrefectClient

    return SyncPrefectClient(service.api_url, auth_string=service.credential)


def flow_run_id(cli_output: str) -> str:
    """The run id `prefect deployment run` prints ("UUID: ...")."""
    found = re.search(r"UUID: ([0-9a-f-]{36})", cli_output)
    if found:
        return found.group(1)
    raise AssertionError(f"no flow run id in:\n{cli_output}")


def wait_for_state(
    service: LiveService, run_id: str, states: set[str], timeout: float = 180
) -> Any:
    """The flow run once its state type is one of `states`."""
    with client(service) as api:

        def reached() -> Any:
            run = api.read_flow_run(run_id)
            if run.state is None:
                return None
            kind = run.state.type.value
            if kind in FINAL_STATES and kind not in states:
                raise AssertionError(
                    f"flow run {run_id} ended {kind}: {run.state.message}\n"
                    f"{service.log('worker')[-4000:]}"
                )
            return run if kind in states else None

        return wait_for(reached, timeout, f"flow run {run_id} to reach {sorted(states)}")

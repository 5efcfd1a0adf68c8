"""Run modelcycle as a service with Prefect's own commands: server, work pool, deployments, worker
(and, when asked, `modelcycle serve`, the prediction service).

A convenience, not a replacement: every step is a `prefect ...` command that is printed before
it runs, so it can be copied, run by hand or put in a unit file. The server and the worker run
in the background in their own process groups; their ids and logs are kept in one folder so
`down` stops exactly those processes. No Prefect import: Prefect runs in the subprocesses.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from modelcycle.errors import ModelcycleError
from modelcycle.settings import DEFAULT_PORT

POOL = "modelcycle-process"
CRASH_AUTOMATION = "modelcycle-crash-silent-runs"
CRASH_AUTOMATION_FILE = "automations/crash-silent-runs.yaml"
OFFLINE = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
# Background processes `up` may start, in the order `down` stops them: the prediction service
# first (it drains and seals its log), the Prefect server last.
PROCESSES = ("serve", "worker", "server")


class ServiceError(ModelcycleError):
    """The Prefect server cannot be reached or a service step failed."""


def check_server(api_url: str, timeout: float = 5.0) -> None:
    """Fail with one line naming the URL when no Prefect server answers there."""
    try:
        response = httpx.get(f"{api_url.rstrip('/')}/health", timeout=timeout)
    except httpx.HTTPError as exc:
        reason = type(exc).__name__ if not str(exc) else str(exc)
        raise ServiceError(
            f"no Prefect server answers at {api_url} ({reason}); start one with "
            "`modelcycle service up` or `prefect server start`, or unset PREFECT_API_URL to "
            "use a temporary local server"
        ) from None
    if response.status_code != 200:
        raise ServiceError(
            f"no Prefect server answers at {api_url} (HTTP {response.status_code} from /health)"
        )


@dataclass(frozen=True)
class Service:
    """Where one local service keeps its Prefect home, logs and process ids."""

    folder: Path
    port: int = DEFAULT_PORT

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    @property
    def prefect_home(self) -> Path:
        return self.folder / "prefect-home"

    def pid_file(self, name: str) -> Path:
        return self.folder / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.folder / f"{name}.log"

    def env(self, base: Mapping[str, str]) -> dict[str, str]:
        """Prefect's home for the server and the CLI; the API URL for everything but the server."""
        env = {**base, **OFFLINE, "PREFECT_HOME": str(self.prefect_home)}
        env["PREFECT_API_URL"] = self.api_url
        return env


Say = Callable[[str], None]


def _prefect() -> str:
    return str(Path(sys.executable).parent / "prefect")


def _modelcycle() -> str:
    return str(Path(sys.executable).parent / "modelcycle")


def _shown(args: list[str], env: Mapping[str, str], keys: tuple[str, ...]) -> str:
    prefix = " ".join(f"{k}={shlex.quote(env[k])}" for k in keys if k in env)
    return f"{prefix} {shlex.join([Path(args[0]).name, *args[1:]])}".strip()


def _run(args: list[str], env: dict[str, str], say: Say, check: bool = True) -> int:
    say(f"+ {_shown(args, env, ('PREFECT_API_URL',))}")
    result = subprocess.run(args, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if check and result.returncode != 0:
        last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise ServiceError(f"prefect {shlex.join(args[1:])} exited {result.returncode}: {last[0]}")
    return result.returncode


def _start(service: Service, name: str, args: list[str], env: dict[str, str], say: Say) -> int:
    keys = ("PREFECT_HOME", "PREFECT_SERVER_API_HOST", "PREFECT_SERVER_API_PORT", "PREFECT_API_URL")
    say(f"+ {_shown(args, env, keys)} &   # log: {service.log_file(name)}")
    with service.log_file(name).open("ab") as log:
        proc = subprocess.Popen(
            args,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so `down` stops all of it
        )
    service.pid_file(name).write_text(str(proc.pid))
    return proc.pid


def is_running(pid: int) -> bool:
    """The process exists and is not a zombie waiting to be reaped."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def recorded_pid(service: Service, name: str) -> int | None:
    path = service.pid_file(name)
    if not path.is_file():
        return None
    text = path.read_text().strip()
    pid = int(text) if text.isdigit() else None
    return pid if pid is not None and is_running(pid) else None


def up(service: Service, base_env: Mapping[str, str], say: Say, worker: bool = True) -> None:
    """Server (unless one answers), work pool, crash automation, `deploy --all`, worker."""
    service.folder.mkdir(parents=True, exist_ok=True)
    env = service.env(base_env)
    try:
        check_server(service.api_url, timeout=2)
        say(f"a Prefect server already answers at {service.api_url}")
    except ServiceError:
        server_env = {
            **{k: v for k, v in env.items() if k != "PREFECT_API_URL"},
            "PREFECT_SERVER_API_HOST": "127.0.0.1",
            "PREFECT_SERVER_API_PORT": str(service.port),
        }
        pid = _start(service, "server", [_prefect(), "server", "start"], server_env, say)
        _wait_healthy(service, pid)
    prefect = _prefect()
    if _run([prefect, "work-pool", "inspect", POOL], env, say, check=False) != 0:
        _run([prefect, "work-pool", "create", POOL, "--type", "process"], env, say)
    if _run([prefect, "automation", "inspect", CRASH_AUTOMATION], env, say, check=False) != 0:
        _run([prefect, "automation", "create", "--from-file", CRASH_AUTOMATION_FILE], env, say)
    _run([prefect, "--no-prompt", "deploy", "--all"], env, say)
    if worker and recorded_pid(service, "worker") is None:
        _start(service, "worker", [prefect, "worker", "start", "--pool", POOL], env, say)
    say(f"UI: {service.url}")
    say(f"point the prefect CLI at it: export PREFECT_API_URL={service.api_url}")


def _wait_healthy(service: Service, pid: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_running(pid):
            tail = service.log_file("server").read_text(errors="replace")[-2000:]
            raise ServiceError(f"prefect server start exited; its log ends:\n{tail}")
        try:
            check_server(service.api_url, timeout=2)
            return
        except ServiceError:
            time.sleep(1)
    raise ServiceError(f"the Prefect server did not answer within {timeout:.0f} s")


@dataclass(frozen=True)
class Serving:
    """What `up` passes on to `modelcycle serve`; what is left out keeps the service's own
    defaults (its settings, MODELCYCLE_SERVE_* in the environment)."""

    port: int | None = None
    models: tuple[str, ...] = ()

    def args(self) -> list[str]:
        args = [_modelcycle(), "serve"]
        for model in self.models:
            args += ["--model", model]
        return args + (["--port", str(self.port)] if self.port is not None else [])


def start_serving(
    service: Service, serving: Serving, base_env: Mapping[str, str], say: Say
) -> None:
    """`modelcycle serve` in the background, beside the server and worker; waits until it
    answers its liveness probe (readiness also needs a champion, which a fresh clone lacks)."""
    from modelcycle.serving import read_settings

    settings = read_settings(port=serving.port, models=list(serving.models) or None)
    url = f"http://127.0.0.1:{settings.port}"
    service.folder.mkdir(parents=True, exist_ok=True)
    pid = recorded_pid(service, "serve")
    if pid is not None:
        say(f"prediction service: already running here (pid {pid})")
    else:
        env = {**base_env, **OFFLINE}
        pid = _start(service, "serve", serving.args(), env, say)
        _wait_serving(service, pid, url)
    tokens = (
        "MODELCYCLE_SERVE_TOKENS"
        if settings.tokens is not None or settings.insecure_no_auth
        else str(settings.token_file)
    )
    say(f"prediction service: {url} (API docs {url}/docs; bearer token: {tokens})")


def _wait_serving(service: Service, pid: int, url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_running(pid):
            tail = service.log_file("serve").read_text(errors="replace")[-2000:]
            raise ServiceError(f"modelcycle serve exited; its log ends:\n{tail}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise ServiceError(f"modelcycle serve did not answer {url}/healthz within {timeout:.0f} s")


def down(service: Service, say: Say) -> None:
    """Stop the recorded prediction service, worker and server: their process groups, by id."""
    for name in PROCESSES:
        pid = recorded_pid(service, name)
        if pid is None:
            say(f"{name}: not running")
            continue
        # The worker drains on the first signal and stops on the second.
        for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGINT, 10.0), (signal.SIGKILL, 5.0)):
            say(f"+ kill -{sig.name.removeprefix('SIG')} -{pid}   # {name}")
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                break
            if _wait_gone(pid, grace):
                break
        service.pid_file(name).unlink(missing_ok=True)


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            waited, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            waited = 0
        if waited == pid or not is_running(pid):
            return True
        time.sleep(0.2)
    return False

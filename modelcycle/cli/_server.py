"""Run modelcycle as a service with Prefect's own commands: server, work pool, deployments, worker
(and, when asked, `modelcycle serve`, the prediction service).

A convenience, not a replacement: every step is a `prefect ...` command that is printed before
it runs, so it can be copied, run by hand or put in a unit file. The server and the worker run
in the background in their own process groups; their ids and logs are kept in one folder so
`down` stops exactly those processes. No Prefect import: Prefect runs in the subprocesses.

Secure by default, because a worker runs whatever a flow run asks of it: the server listens on
loopback only, answers only requests carrying the service's credential (Prefect's basic
authentication), allows cross-origin requests only from its own UI, checks a CSRF token on every
state-changing request, and its work pool's base job template gives a run no way to choose the
command, the environment or the working directory of the process the worker starts.
"""

from __future__ import annotations

import base64
import os
import secrets
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
POOL_TEMPLATE_FILE = "work-pools/modelcycle-process.json"
CRASH_AUTOMATION = "modelcycle-crash-silent-runs"
CRASH_AUTOMATION_FILE = "automations/crash-silent-runs.yaml"
OFFLINE = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
# Background processes `up` may start, in the order `down` stops them: the prediction service
# first (it drains and seals its log), the Prefect server last.
PROCESSES = ("serve", "worker", "server")
# Prefect's client setting: every client (CLI, worker, flow runs, tests) sends it.
AUTH_ENV = "PREFECT_API_AUTH_STRING"
SERVER_AUTH_ENV = "PREFECT_SERVER_API_AUTH_STRING"
CREDENTIAL_USER = "modelcycle"
# Every client of the service beats: the worker's flow runs inherit it (the pool's template
# gives runs no environment of their own), and so does `modelcycle train` against the service.
# 30 s is Prefect's minimum; automations/crash-silent-runs.yaml crashes a run silent for 60 s.
CLIENT_ENV = {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"}


class ServiceError(ModelcycleError):
    """The Prefect server cannot be reached or a service step failed."""


def read_credential(path: Path) -> str | None:
    """The stored credential, refused when other users could read it; None if there is none."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    if mode & 0o077:
        raise ServiceError(
            f"{path}: readable by other users (mode {mode & 0o777:o}); it holds the service's "
            f"credential: `chmod 600 {path}`, or delete it to make a new one"
        )
    text = path.read_text(encoding="utf-8").strip()
    if ":" not in text or text.startswith(":") or text.endswith(":"):
        raise ServiceError(f"{path}: expected one line 'user:password'")
    return text


def ensure_credential(path: Path) -> str:
    """The credential in `path`, made once: random, in a file only its owner can read, in a
    folder only its owner can enter. Created with O_EXCL, so two `service up` agree."""
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    existing = read_credential(path)
    if existing is not None:
        return existing
    credential = f"{CREDENTIAL_USER}:{secrets.token_urlsafe(32)}"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return read_credential(path) or credential
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(credential + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return credential


def server_security_env(port: int, credential: str) -> dict[str, str]:
    """Prefect's own server settings for a service reachable from this machine only, by holders
    of the credential, from its own UI only."""
    own_origins = f"http://127.0.0.1:{port},http://localhost:{port}"
    return {
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        SERVER_AUTH_ENV: credential,
        "PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED": "true",
        "PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS": own_origins,
    }


def basic_auth_header(credential: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(credential.encode()).decode()}


def check_access(api_url: str, credential: str | None, timeout: float = 5.0) -> bool:
    """Is `credential` accepted, and does the server refuse requests without one?

    Returns whether anonymous requests are refused; fails with one line when ours is."""
    version = f"{api_url.rstrip('/')}/admin/version"
    headers = basic_auth_header(credential) if credential else {}
    try:
        ours = httpx.get(version, headers=headers, timeout=timeout)
        anonymous = httpx.get(version, timeout=timeout)
    except httpx.HTTPError as exc:
        raise ServiceError(f"no Prefect server answers at {api_url} ({exc})") from None
    if ours.status_code == 401:
        where = f"${AUTH_ENV}" if credential else f"no credential ({AUTH_ENV} is not set)"
        raise ServiceError(f"the Prefect server at {api_url} refuses {where} (HTTP 401)")
    return anonymous.status_code == 401


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

    @property
    def credential_file(self) -> Path:
        return self.folder / "auth-string"

    def pid_file(self, name: str) -> Path:
        return self.folder / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.folder / f"{name}.log"

    def credential(self, base: Mapping[str, str]) -> str:
        """PREFECT_API_AUTH_STRING when exported (e.g. from a secret store), else the file."""
        return base.get(AUTH_ENV) or ensure_credential(self.credential_file)

    def env(self, base: Mapping[str, str]) -> dict[str, str]:
        """Every client's environment: this server, its credential, Prefect's home here."""
        env = {**CLIENT_ENV, **base, **OFFLINE, "PREFECT_HOME": str(self.prefect_home)}
        env["PREFECT_API_URL"] = self.api_url
        env[AUTH_ENV] = self.credential(base)
        return env

    def server_env(self, base: Mapping[str, str]) -> dict[str, str]:
        """The server's environment: no API URL of its own, the security settings on."""
        env = {k: v for k, v in self.env(base).items() if k != "PREFECT_API_URL"}
        return {**env, **server_security_env(self.port, env[AUTH_ENV])}

    def credential_shown(self, base: Mapping[str, str]) -> str:
        """How a printed command refers to the credential: never by its value."""
        if base.get(AUTH_ENV):
            return f'"${AUTH_ENV}"'
        return f'"$(cat {shlex.quote(str(self.credential_file))})"'


Say = Callable[[str], None]


def _prefect() -> str:
    return str(Path(sys.executable).parent / "prefect")


def _modelcycle() -> str:
    return str(Path(sys.executable).parent / "modelcycle")


SECRET_KEYS = frozenset({AUTH_ENV, SERVER_AUTH_ENV})


def _shown(args: list[str], env: Mapping[str, str], keys: tuple[str, ...], secret: str = "") -> str:
    """The command as a shell line; a credential appears as where to read it, never its value."""
    prefix = " ".join(
        f"{k}={secret if k in SECRET_KEYS else shlex.quote(env[k])}" for k in keys if k in env
    )
    return f"{prefix} {shlex.join([Path(args[0]).name, *args[1:]])}".strip()


CLIENT_KEYS = ("PREFECT_API_URL", AUTH_ENV)
WORKER_KEYS = (*CLIENT_KEYS, *CLIENT_ENV)
SERVER_KEYS = (
    "PREFECT_HOME",
    "PREFECT_SERVER_API_HOST",
    "PREFECT_SERVER_API_PORT",
    SERVER_AUTH_ENV,
    "PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED",
    "PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS",
)


def _run(
    args: list[str], env: dict[str, str], say: Say, check: bool = True, secret: str = ""
) -> int:
    say(f"+ {_shown(args, env, CLIENT_KEYS, secret)}")
    result = subprocess.run(args, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if check and result.returncode != 0:
        last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise ServiceError(f"prefect {shlex.join(args[1:])} exited {result.returncode}: {last[0]}")
    return result.returncode


def _start(
    service: Service,
    name: str,
    args: list[str],
    env: dict[str, str],
    say: Say,
    keys: tuple[str, ...],
    secret: str,
) -> int:
    say(f"+ {_shown(args, env, keys, secret)} &   # log: {service.log_file(name)}")
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
    """Server (unless one answers), work pool with the locked job template, crash automation,
    `deploy --all`, worker; every client with the service's credential."""
    service.folder.mkdir(parents=True, exist_ok=True)
    service.folder.chmod(0o700)
    env = service.env(base_env)
    secret = service.credential_shown(base_env)
    try:
        check_server(service.api_url, timeout=2)
        say(f"a Prefect server already answers at {service.api_url}")
    except ServiceError:
        command = [_prefect(), "server", "start"]
        server_env = service.server_env(base_env)
        pid = _start(service, "server", command, server_env, say, SERVER_KEYS, secret)
        _wait_healthy(service, pid)
    if not check_access(service.api_url, env[AUTH_ENV]):
        say(
            f"warning: the server at {service.api_url} also answers requests without a "
            "credential: it was not started by `modelcycle service up`; anyone on this machine "
            "can run flows on it"
        )
    prefect = _prefect()
    pool = [prefect, "work-pool"]
    template = ["--base-job-template", POOL_TEMPLATE_FILE]
    if _run([*pool, "inspect", POOL], env, say, check=False, secret=secret) != 0:
        _run([*pool, "create", POOL, "--type", "process", *template], env, say, secret=secret)
    else:  # an older pool may let runs choose their command: lock it
        _run([*pool, "update", POOL, *template], env, say, secret=secret)
    automation = [prefect, "automation"]
    if _run([*automation, "inspect", CRASH_AUTOMATION], env, say, False, secret) != 0:
        _run([*automation, "create", "--from-file", CRASH_AUTOMATION_FILE], env, say, True, secret)
    _run([prefect, "--no-prompt", "deploy", "--all"], env, say, secret=secret)
    if worker and recorded_pid(service, "worker") is None:
        args = [prefect, "worker", "start", "--pool", POOL]
        _start(service, "worker", args, env, say, WORKER_KEYS, secret)
    say(f"UI: {service.url} (its login page takes the whole credential: {secret})")
    say(
        f"point the prefect CLI at it: export PREFECT_API_URL={service.api_url} {AUTH_ENV}={secret}"
    )


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
        pid = _start(service, "serve", serving.args(), env, say, keys=(), secret="")
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

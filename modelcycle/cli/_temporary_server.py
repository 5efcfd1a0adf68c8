"""The temporary Prefect server of one `modelcycle` command, as its own process.

Started by `_runtime.temporary_server()` as `python -m modelcycle.cli._temporary_server PORT`.
Prefect's own temporary server is stopped by an `atexit` hook, which a SIGKILL or the
out-of-memory killer never runs: it stayed up (about 200 MB) for ever, and the flow run it
was serving stayed `RUNNING`. This one watches its parent instead: when the parent process is
gone, however it died, it marks every flow run the parent drove and left unfinished as
`Crashed`, then stops. The watch polls `getppid()` (the kernel re-parents an orphan), which
unlike `PR_SET_PDEATHSIG` needs no signal handler racing the server's shutdown, does not fire
when merely the forking thread ends, and works on every POSIX system.
"""

from __future__ import annotations

import base64
import os
import re
import sys
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

PARENT_ENV = "MODELCYCLE_TEMPORARY_SERVER_PARENT"
FINAL_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "CRASHED"})
WATCH_SECONDS = 0.2
SHUTDOWN_GRACE_SECONDS = 15.0
_SET_STATE = re.compile(r"^/api/flow_runs/([0-9a-fA-F-]{36})/set_state/?$")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class RunRecorder:
    """ASGI wrapper noting every flow run whose state a client set through this server: the
    runs the parent process drove (nobody else knows this server's port and credential)."""

    def __init__(
        self, app: Callable[[Scope, Receive, Send], Awaitable[None]], flow_run_ids: set[str]
    ) -> None:
        self.app = app
        self.flow_run_ids = flow_run_ids

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method") == "POST":
            found = _SET_STATE.match(scope.get("path", ""))
            if found:
                self.flow_run_ids.add(found.group(1).lower())
        await self.app(scope, receive, send)


def crash_unfinished(api_url: str, auth_string: str, run_ids: set[str], parent: int) -> list[str]:
    """Mark `Crashed` every run in `run_ids` that has not reached a final state."""
    import httpx

    token = base64.b64encode(auth_string.encode()).decode()
    message = (
        f"the modelcycle process (pid {parent}) running this flow ended before it finished "
        "(killed); its temporary Prefect server marked the run Crashed on the way out"
    )
    crashed = []
    with httpx.Client(
        base_url=api_url, headers={"Authorization": f"Basic {token}"}, timeout=10
    ) as http:
        for run_id in sorted(run_ids):
            response = http.get(f"/flow_runs/{run_id}")
            if response.status_code != 200:
                continue
            state = (response.json().get("state") or {}).get("type")
            if state in FINAL_STATES:
                continue
            body = {"state": {"type": "CRASHED", "name": "Crashed", "message": message}}
            http.post(f"/flow_runs/{run_id}/set_state", json={**body, "force": True})
            crashed.append(run_id)
    return crashed


def _watch_parent(server: Any, flow_run_ids: set[str], parent: int, port: int) -> None:
    while os.getppid() == parent:
        time.sleep(WATCH_SECONDS)
    # Whatever happens next, this process does not outlive its grace period.
    threading.Timer(SHUTDOWN_GRACE_SECONDS, os._exit, (1,)).start()
    try:
        if flow_run_ids:
            auth_string = os.environ["PREFECT_SERVER_API_AUTH_STRING"]
            api_url = f"http://127.0.0.1:{port}/api"
            crash_unfinished(api_url, auth_string, set(flow_run_ids), parent)
    finally:
        server.should_exit = True


def main(argv: list[str]) -> None:
    import uvicorn

    port = int(argv[1])
    parent = int(os.environ[PARENT_ENV])
    if os.getppid() != parent:  # the parent died before we got here
        return
    flow_run_ids: set[str] = set()

    def create_app() -> RunRecorder:
        from prefect.server.api.server import create_app as prefect_app

        return RunRecorder(prefect_app(), flow_run_ids)

    config = uvicorn.Config(
        create_app,
        factory=True,
        host="127.0.0.1",
        port=port,
        log_level="error",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    # Watching starts before the (slow) start-up, so a parent killed meanwhile is noticed too.
    watch = threading.Thread(
        target=_watch_parent, args=(server, flow_run_ids, parent, port), daemon=True
    )
    watch.start()
    server.run()


if __name__ == "__main__":
    main(sys.argv)

"""Kills at each crash window of a `modelcycle train`, then the state a user finds afterwards.

A real `modelcycle train` in a subprocess, on its own temporary Prefect server, SIGKILLed at
the moment it would register the version (its run folder committed, no registry row yet):
the folder must not look like a run, the temporary server must die with the process, and the
flow run must not stay `RUNNING`. Then a writer killed mid-write and a live writer leave
staging folders, and the next `modelcycle train` in the same state folder reconciles: the
dead writer's staging goes, the live one's stays, the unregistered folder is marked orphaned.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO
from live_prefect import wait_for

from modelcycle.artifacts import PENDING_NAME, STAGING_PREFIX, ArtifactStore
from modelcycle.cli import is_running
from modelcycle.errors import RegistryError
from modelcycle.registry import Registry

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

MODEL = "gss-income"
HOUR = 3600.0

# Runs the real command line; the registry's write is replaced by a SIGKILL of the process,
# after noting which processes it had started (the temporary server among them).
KILLED_AT_REGISTRATION = """
import json, os, signal, sys
from pathlib import Path
from modelcycle.registry import Registry

def children():
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                cmdline = (entry / "cmdline").read_bytes().replace(b"\\0", b" ").decode()
            except OSError:
                continue
            if int(stat[1]) == os.getpid():
                found.append({"pid": int(entry.name), "cmdline": cmdline})
    return found

def killed(self, *args, **kwargs):
    Path(os.environ["KILL_RECORD"]).write_text(json.dumps(children()))
    os.kill(os.getpid(), signal.SIGKILL)

Registry.register_version = killed
sys.argv = ["modelcycle", *sys.argv[1:]]
from modelcycle.cli import main
main()
"""

# A writer that dies while writing (SIGKILL after its first file), or stays alive writing.
WRITER = """
import os, signal, sys, time
from modelcycle.artifacts import ArtifactStore
writer = ArtifactStore(sys.argv[1]).open_run(sys.argv[2], sys.argv[3])
writer.write_text("half.txt", "written before the kill")
print("written", flush=True)
if sys.argv[4] == "die":
    os.kill(os.getpid(), signal.SIGKILL)
time.sleep(600)
"""


def _env(state: Path, **extra: str) -> dict[str, str]:
    """A user's shell: no Prefect server configured, so the command starts its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MODELCYCLE_"))}
    env.update(
        MODELCYCLE_HOME=str(state),
        MODELCYCLE_TRAINING_THREADS="1",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PYTHONPATH=str(REPO),
    )
    env.update(extra)
    return env


def _flow_runs(state: Path) -> list[tuple[str, str]]:
    """(id, state type) of every flow run in the state folder's Prefect database."""
    with sqlite3.connect(state / "prefect" / "prefect.db") as db:
        return [(str(i), str(t)) for i, t in db.execute("SELECT id, state_type FROM flow_run")]


def _run_ids(state: Path) -> set[str]:
    try:
        versions = Registry(f"sqlite:///{state / 'registry.db'}").list_versions(MODEL)
    except RegistryError:  # no version of the model at all
        return set()
    return {v.run_id for v in versions}


def _age(path: Path, seconds: float) -> None:
    """Move every modification time under `path` into the past, as if the kill were old."""
    then = time.time() - seconds
    for item in [path, *path.rglob("*")]:
        os.utime(item, (then, then))


def _writer(store: Path, run_id: str, mode: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(store), MODEL, run_id, mode],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "written"
    return proc


def _staging(store: Path, run_id: str) -> list[Path]:
    return sorted((store / MODEL).glob(f"{STAGING_PREFIX}{run_id}-*"))


def test_kills_at_each_window_leave_a_state_the_next_run_settles(
    tmp_path: Path, small_config: Path
) -> None:
    state, store_root = tmp_path / "state", tmp_path / "state" / "artifacts"
    record = tmp_path / "killed.json"

    # 1. Killed between committing the run folder and registering it.
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_AT_REGISTRATION, "train", str(small_config)],
        cwd=REPO,
        env=_env(state, KILL_RECORD=str(record)),
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    servers = [
        c["pid"] for c in json.loads(record.read_text()) if "_temporary_server" in c["cmdline"]
    ]
    assert len(servers) == 1, record.read_text()

    # The temporary server dies with the process that started it ...
    wait_for(lambda: not is_running(servers[0]), 30, "the temporary server to stop")
    # ... and the run it served is not left RUNNING.
    ((run_id, run_state),) = _flow_runs(state)
    assert run_state == "CRASHED"
    # The committed folder is whole but is not a run: nothing registered it.
    store = ArtifactStore(str(store_root))
    assert _run_ids(state) == set()
    assert store.list_runs(MODEL) == []
    assert store.unconfirmed_runs(MODEL)[run_id]["state"] == "pending"
    assert store.verify(MODEL, run_id) == []

    # 2. A writer killed mid-write, an hour ago; a live writer whose files are as old.
    _writer(store_root, "dead-writer", "die").wait(timeout=30)
    live = _writer(store_root, "live-writer", "live")
    try:
        (dead_staging,) = _staging(store_root, "dead-writer")
        (live_staging,) = _staging(store_root, "live-writer")
        for path in (dead_staging, live_staging, store_root / MODEL / run_id / PENDING_NAME):
            _age(path, 2 * HOUR)

        # 3. The next run finds them all.
        after = subprocess.run(
            [str(Path(sys.executable).parent / "modelcycle"), "train", str(small_config)],
            cwd=REPO,
            env=_env(state),
            capture_output=True,
            text=True,
            timeout=400,
        )
        assert after.returncode == 0, after.stdout + after.stderr
        assert not dead_staging.exists()
        assert live_staging.exists() and live.poll() is None
    finally:
        live.kill()
        live.wait()

    (registered,) = _run_ids(state)
    assert store.list_runs(MODEL) == [registered]
    assert store.unconfirmed_runs(MODEL)[run_id]["state"] == "orphaned"
    assert run_id not in store.list_runs(MODEL)
    states = dict(_flow_runs(state))
    assert states == {run_id: "CRASHED", registered: "COMPLETED"}

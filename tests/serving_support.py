"""Helpers for the prediction-service tests: versions trained and registered the way the
training flow records them (run folder with the resolved config in its manifest, registry
row with the model's SHA-256 and the config hash), and a real `modelcycle serve` process on a
free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from modelcycle import data
from modelcycle.artifacts import ArtifactStore, dump_model, run_lineage, sha256_bytes
from modelcycle.config import PipelineConfig, load_config
from modelcycle.registry import Registration, Registry, VersionStatus
from modelcycle.training import train

REPO = Path(__file__).resolve().parent.parent
MODEL_FILE = "model.skops"
SERVE_COMMAND = [
    sys.executable,
    "-c",
    "from modelcycle.cli import main; main()",
    "serve",
]


@dataclass
class Trained:
    """A registered version and the rows it was not trained on."""

    version: int
    pipeline: Any
    config: PipelineConfig
    holdout: pd.DataFrame
    location: str


def train_and_register(
    config_path: Path, registry_url: str, store_root: str, max_iter: int, promote: bool
) -> Trained:
    """Fit the configured pipeline on its training split and register it (no Prefect: the
    flow is tested elsewhere; here only what the registry and manifest hold matters)."""
    config = load_config(config_path)
    params = {**config.model.params, "max_iter": max_iter}
    config = config.model_copy(
        update={"model": config.model.model_copy(update={"params": params, "search": None})}
    )
    table = data.load_table(config, Path(config.data.source))
    cleaned, _ = data.clean(table, config)
    train_rows, holdout = data.split(cleaned, config)
    X, y = data.features_and_target(train_rows, config)
    pipeline = train(config, X, y, threads=1).pipeline
    model_bytes = dump_model(pipeline)
    sha = sha256_bytes(model_bytes)
    run_id = f"test-{uuid.uuid4().hex[:12]}"
    resolved = config.model_dump(mode="json")
    lineage = run_lineage(
        resolved, {"train": "test"}, str(config.data.source), "scratch", None, run_id
    )
    store = ArtifactStore(store_root)
    with store.open_run(config.name, run_id) as run:
        run.write_bytes(MODEL_FILE, model_bytes)
        folder = run.commit({**lineage, "model_file": MODEL_FILE, "model_sha256": sha})
    registry = Registry(registry_url)
    try:
        version = registry.register_version(
            Registration(
                model_name=config.name,
                owner=config.owner,
                description=config.description,
                run_id=run_id,
                artifact_uri=folder.uri,
                model_file=MODEL_FILE,
                model_sha256=sha,
                data_fingerprint="test",
                config_hash=lineage["config_hash"],
                code_version=lineage["code_version"],
                package_versions={},
                parent_version=None,
                metrics={},
                gate={"decision": "promote"},
            ),
            status=VersionStatus.CANDIDATE,
            actor="test",
            reason="serving test",
        )
        if promote:
            registry.promote(config.name, version.version, actor="test", reason="serving test")
    finally:
        registry.close()
    return Trained(version.version, pipeline, config, holdout, f"{folder.uri}/{MODEL_FILE}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServiceProcess:
    """A `modelcycle serve` process group and how to reach it."""

    process: subprocess.Popen[bytes]
    url: str
    token: str
    log_root: Path
    output: Path
    env: dict[str, str] = field(repr=False, default_factory=dict)

    def client(self, token: str | None = "default", timeout: float = 30) -> httpx.Client:
        headers = {}
        if token is not None:
            headers["Authorization"] = f"Bearer {self.token if token == 'default' else token}"
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"service exited early:\n{self.output.read_text()[-4000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"service not ready in {timeout} s:\n{self.output.read_text()[-4000:]}")

    def worker_pids(self) -> list[int]:
        """The uvicorn worker processes (children of the supervisor)."""
        out = subprocess.run(
            ["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True, check=False
        ).stdout
        children = [int(p) for p in out.split()]
        workers = []
        for pid in children:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except FileNotFoundError:
                continue
            # uvicorn's workers are spawned (`spawn_main`); the resource tracker is not one.
            if b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
                workers.append(pid)
        return workers

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def start_service(
    home: Path, token: str, extra_env: dict[str, str] | None = None, args: list[str] = ()
) -> ServiceProcess:
    port = free_port()
    log_root = home / "predictions"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "MODELCYCLE_HOME": str(home),
        "MODELCYCLE_SERVE_TOKENS": token,
        "MODELCYCLE_SERVE_LOG_ROOT": str(log_root),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        **(extra_env or {}),
    }
    output = home / f"serve-{port}.log"
    handle = output.open("wb")
    process = subprocess.Popen(
        [*SERVE_COMMAND, "--port", str(port), *args],
        cwd=REPO,
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return ServiceProcess(process, f"http://127.0.0.1:{port}", token, log_root, output, env)

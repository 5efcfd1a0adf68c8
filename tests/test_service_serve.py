"""`modelcycle service up --serve`'s part: the prediction service started in the background with
its pid and log beside the Prefect server's, and stopped first by `service down`.

Runs the real `modelcycle serve` (no Prefect server needed: `start_serving` and `down` are the
functions `service up --serve` and `service down` call after and around Prefect's commands).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import httpx
import pytest
from serving_support import REPO, free_port, train_and_register

from modelcycle.cli._server import Service, ServiceError, Serving, down, start_serving

ROW = {
    "age": 47,
    "prestg10": 52,
    "childs": 2,
    "occrecode": "Professional",
    "wrkstat": "Full-Time",
    "educcat": "Bachelor",
    "maritalcat": "Married",
}


@pytest.fixture
def served_home(state, small_config: Path, monkeypatch: pytest.MonkeyPatch):
    """A state folder whose registry has a champion, and the environment the service reads."""
    trained = train_and_register(
        small_config, state.registry_url, state.artifact_store, 20, promote=True
    )
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("MODELCYCLE_SERVE_TOKENS", "test-token")
    monkeypatch.setenv("MODELCYCLE_SERVE_WORKERS", "1")  # one process to start, not one per core
    return trained


def test_serve_starts_beside_the_service_and_down_stops_it_first(state, served_home) -> None:
    service = Service(state.home / "service", free_port())
    port = free_port()
    said: list[str] = []
    try:
        start_serving(service, Serving(port=port, models=("gss-income",)), os.environ, said.append)
        pid = int(service.pid_file("serve").read_text())
        assert any(f"modelcycle serve --model gss-income --port {port}" in s for s in said), said
        assert said[-1].startswith(f"prediction service: http://127.0.0.1:{port}"), said
        response = httpx.post(
            f"http://127.0.0.1:{port}/v1/models/gss-income/predict",
            json={"rows": [ROW]},
            headers={"Authorization": "Bearer test-token"},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        assert response.json()["version"] == served_home.version
    finally:
        down(service, said.append)
    assert f"+ kill -TERM -{pid}   # serve" in said
    assert "worker: not running" in said and "server: not running" in said
    assert said.index(f"+ kill -TERM -{pid}   # serve") < said.index("worker: not running")
    assert not service.pid_file("serve").exists()
    with socket.socket() as sock, pytest.raises(OSError):
        sock.settimeout(2)
        sock.connect(("127.0.0.1", port))


def test_serve_that_cannot_start_fails_with_its_own_reason(state, served_home) -> None:
    service = Service(state.home / "service", free_port())
    with pytest.raises(ServiceError) as failed:
        start_serving(
            service, Serving(port=free_port(), models=("no-such-model",)), os.environ, print
        )
    message = str(failed.value)
    assert message.startswith("modelcycle serve exited; its log ends:")
    assert "no-such-model" in message

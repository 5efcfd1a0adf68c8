"""The service in process (its ASGI app, no uvicorn) where a real process cannot be made to
fail on cue: a prediction log that cannot keep up."""

from __future__ import annotations

import asyncio
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import small_config_dict, write_config
from serving_support import Trained, train_and_register

from modelcycle.serving import ServeSettings, ServiceApp, create_app

MODEL = "gss-income"


class Behind(Exception):
    """Stands for the log's own overload error (`LogOverloaded`)."""


class BehindLog:
    """A prediction log that is behind: either its queue is full before anything is
    submitted (`pending`), or it refuses the submit itself."""

    full_queue = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass

    def pending(self) -> int:
        return 10**9 if BehindLog.full_queue else 0

    def at_risk(self) -> int:
        return 0

    def submit_predictions(self, records: list[dict[str, Any]]) -> Future[None]:
        raise Behind("queue full")

    def submit_feedback(self, records: list[dict[str, Any]]) -> Future[None]:
        raise Behind("queue full")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, small_parquet: Path) -> tuple[Path, Trained]:
    home = tmp_path_factory.mktemp("inprocess")
    config = write_config(home, small_config_dict(small_parquet), "income.yaml")
    version = train_and_register(
        config, f"sqlite:///{home / 'registry.db'}", str(home / "artifacts"), 10, promote=True
    )
    return home, version


@pytest.mark.parametrize("full_queue", [True, False], ids=["queue-full", "submit-refused"])
def test_a_log_that_cannot_keep_up_answers_503_and_records_nothing(
    trained: tuple[Path, Trained], monkeypatch: pytest.MonkeyPatch, full_queue: bool
) -> None:
    home, version = trained
    monkeypatch.setenv("MODELCYCLE_HOME", str(home))
    monkeypatch.setattr(BehindLog, "full_queue", full_queue)
    settings = ServeSettings(models=[MODEL], insecure_no_auth=True, compact_seconds=0)
    app = create_app(settings, log_factory=BehindLog, overloaded=Behind)
    row = version.holdout[version.config.features.all].iloc[0].astype(object).to_dict()
    row = {k: (None if v != v else v) for k, v in row.items()}  # NaN -> null

    async def scenario() -> tuple[httpx.Response, httpx.Response, str]:
        service = app.state.service
        await service.start()
        try:
            transport = httpx.ASGITransport(app=ServiceApp(app))
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                refused = await client.post(f"/v1/models/{MODEL}/predict", json={"rows": [row]})
                health = await client.get("/healthz")
                metrics = (await client.get("/metrics")).text
        finally:
            await service.stop()
        return refused, health, metrics

    refused, health, metrics = asyncio.run(scenario())
    assert refused.status_code == 503, refused.text
    error = refused.json()["error"]
    assert error["kind"] == "overloaded" and "nothing was recorded" in error["message"]
    assert health.status_code == 200
    assert 'modelcycle_serve_errors_total{kind="overloaded",model="gss-income"} 1.0' in metrics
    rows = [line for line in metrics.splitlines() if line.startswith("modelcycle_serve_rows")]
    assert rows == [], rows  # no row was counted as predicted and logged

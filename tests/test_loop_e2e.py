"""The loop in service mode, through the deployments on a real Prefect server (fixture `live`)
and a real `modelcycle serve`: train -> serve later years with their labels sent back ->
the log's monitoring deployment finds drift in what the service answered -> the drift event's
payload names that labelled log range -> the retraining deployment fine-tunes on it -> the
gate -> the service answers with the gate's choice.

One test: the server, worker and deployments are the session's; the service is started twice
(after the retraining it must load what the registry then says).
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import small_config_dict, write_config
from live_prefect import LiveService, client, flow_run_id, wait_for, wait_for_state
from serving_support import start_service

from modelcycle.artifacts import ArtifactStore
from modelcycle.registry import Registry

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

MODEL = "gss-income-loop"
TRAFFIC_YEARS = (2014, 2016)  # both drift against 1974-2000
ROWS_PER_YEAR = 300


def _run_deployment(live: LiveService, name: str, **params: Any) -> str:
    args = ["deployment", "run", name]
    for key, value in params.items():
        args += ["--param", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"]
    return flow_run_id(live.prefect(*args).stdout)


def _retraining_runs(live: LiveService, config: Path) -> list[Any]:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with client(live) as api:
        deployment = api.read_deployment_by_name("training/retraining")
        runs = api.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
        )
    return [r for r in runs if Path(r.parameters.get("config_path", "")) == config]


def _traffic(demo_parquet: Path) -> tuple[list[dict[str, Any]], list[int]]:
    """Respondents of the traffic years as requests (features and the logged context)."""
    table = pd.read_parquet(demo_parquet)
    rows = pd.concat(table.loc[table["year"] == year].head(ROWS_PER_YEAR) for year in TRAFFIC_YEARS)
    columns = ["age", "prestg10", "childs", "occrecode", "wrkstat", "educcat", "maritalcat"]
    requests = rows[[*columns, "year", "gender"]].astype(object)
    records = requests.where(requests.notna(), None).to_dict(orient="records")
    return records, rows["high_income"].astype(int).tolist()


def _serve(live: LiveService) -> Any:
    service = start_service(
        live.state,
        secrets.token_urlsafe(16),
        extra_env={"MODELCYCLE_SERVE_POLL_SECONDS": "1"},
        args=["--model", MODEL, "--workers", "1"],
    )
    service.wait_ready(timeout=180)
    return service


def test_the_loop_retrains_on_the_labelled_log_through_the_deployments(
    live: LiveService, small_parquet: Path, demo_parquet: Path
) -> None:
    raw = small_config_dict(small_parquet)
    raw["name"] = MODEL
    raw["monitoring"].update(retrain_mode="fine_tune", retrain_data="log")
    config = write_config(live.root, raw, "loop.yaml")
    trained = _run_deployment(live, "training/training", config_path=str(config))
    wait_for_state(live, trained, {"COMPLETED"})

    # serve: the later years answered by v1, each answer's true label sent back
    requests, labels = _traffic(demo_parquet)
    service = _serve(live)
    try:
        with service.client() as http:
            answers = []
            for start in range(0, len(requests), 100):
                response = http.post(
                    f"/v1/models/{MODEL}/predict", json={"rows": requests[start : start + 100]}
                )
                assert response.status_code == 200, response.text
                answers += response.json()["predictions"]
            assert {a["id"] for a in answers} and response.json()["version"] == 1
            items = [{"id": a["id"], "label": y} for a, y in zip(answers, labels, strict=True)]
            recorded = http.post(f"/v1/models/{MODEL}/feedback", json=items).json()["recorded"]
            assert recorded == len(items)
    finally:
        service.stop()  # its segments are sealed: the retraining can read them

    # monitor what the service answered: the log drifts against 1974-2000, the event names it
    monitored = _run_deployment(live, "monitoring/monitoring-log", model_name=MODEL)
    wait_for_state(live, monitored, {"COMPLETED"})
    from modelcycle.monitoring import WindowHistory, history_path

    (judged,) = WindowHistory(history_path(live.state, MODEL)).load()
    assert judged.status == "drift", judged

    triggered = wait_for(
        lambda: (_retraining_runs(live, config) or [None])[0],
        120,
        "the drift event to start a retraining run",
        interval=1,
    )
    log_range = triggered.parameters["overrides"]["prediction_log"]
    assert log_range["only"] is True  # the labelled log alone, up to the end of the range judged
    assert log_range["until"] == judged.until and "since" not in log_range  # the first log run
    wait_for_state(live, str(triggered.id), {"COMPLETED"})

    registry = Registry(f"sqlite:///{live.state / 'registry.db'}")
    try:
        (version,) = [v for v in registry.list_versions(MODEL) if v.run_id == str(triggered.id)]
        champion = registry.champion(MODEL).version
    finally:
        registry.close()
    assert version.parent_version == 1 and version.created_by == f"drift-event:{MODEL}"
    manifest = ArtifactStore(str(live.state / "artifacts")).read_manifest(
        MODEL, version.run_id, version.manifest_sha256
    )
    lineage = manifest.get("metadata", manifest)["prediction_log"]
    assert lineage["labelled_rows"] == len(items) and lineage["parts"]

    # serve again: whatever the gate decided is what answers
    service = _serve(live)
    try:
        with service.client() as http:
            response = http.post(f"/v1/models/{MODEL}/predict", json={"rows": requests[:5]})
        assert response.status_code == 200 and response.json()["version"] == champion
    finally:
        service.stop()

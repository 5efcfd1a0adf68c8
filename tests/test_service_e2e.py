"""End to end against a real Prefect server: deploy -> schedule -> worker -> run -> records.

One server, work pool and worker for the session (fixture `live` in conftest.py); runs use the
4,000-row sample so each takes seconds. What is checked is what a user would look at: the
deployments and schedules on the server, the flow run's final state, the registry rows, the
run folder and its manifest, and the Prefect artifacts.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import small_config_dict, write_config
from live_prefect import BIN, REPO, LiveService, client, flow_run_id, wait_for, wait_for_state

from modelcycle.artifacts import ArtifactStore
from modelcycle.cli import is_running
from modelcycle.errors import RegistryError
from modelcycle.registry import Registry

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

MODEL = "gss-income"
DRIFT_EVENT = "modelcycle.model.drift-detected"
SCHEDULED = {
    "retraining": "0 3 * * 1",
    "monitoring": "30 2 * * *",
    "monitoring-log": "30 2 * * *",
    "experiment": "15 * * * *",
    "retention": "15 4 * * *",
}
DEPLOYMENTS = {
    "training/training",
    "training/retraining",
    "monitoring/monitoring",
    "monitoring/monitoring-log",
    "experiment/experiment",
    "promotion/promotion",
    "rollback/rollback",
    "retirement/retirement",
    "retention/retention",
}


def _registry(live: LiveService) -> Registry:
    return Registry(f"sqlite:///{live.state / 'registry.db'}")


def _store(live: LiveService) -> ArtifactStore:
    return ArtifactStore(str(live.state / "artifacts"))


def _version_of_run(live: LiveService, run_id: str, model: str = MODEL) -> Any:
    try:
        versions = _registry(live).list_versions(model)
    except RegistryError:  # the model has no version at all yet
        return None
    matching = [v for v in versions if v.run_id == run_id]
    return matching[0] if matching else None


def _deployment(live: LiveService, name: str) -> Any:
    with client(live) as api:
        return api.read_deployment_by_name(name)


def _runs_of(live: LiveService, deployment: str) -> list[Any]:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    deployment_id = _deployment(live, deployment).id
    with client(live) as api:
        return api.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
        )


def _run_deployment(live: LiveService, name: str, **params: Any) -> str:
    args = ["deployment", "run", name]
    for key, value in params.items():
        args += ["--param", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"]
    return flow_run_id(live.prefect(*args).stdout)


def test_deploy_all_created_every_deployment_schedule_and_trigger(live: LiveService) -> None:
    with client(live) as api:
        flows = {f.id: f.name for f in api.read_flows()}
        deployments = {f"{flows[d.flow_id]}/{d.name}": d for d in api.read_deployments()}
        automations = {a.name: a for a in api.read_automations()}
    assert set(deployments) == DEPLOYMENTS
    for name, deployment in deployments.items():
        assert deployment.enforce_parameter_schema, name
        assert deployment.work_pool_name == "modelcycle-process", name
        (step,) = deployment.pull_steps
        directory = step["prefect.deployments.steps.set_working_directory"]["directory"]
        assert Path(directory) == REPO, name
        crons = sorted(s.schedule.cron for s in deployment.schedules)
        short = name.split("/")[1]
        assert crons == ([SCHEDULED[short]] if short in SCHEDULED else []), name
    assert deployments["monitoring/monitoring"].parameters["latest_only"] is True
    # The deployment trigger became an automation that runs the retraining deployment.
    (drift,) = [a for a in automations.values() if a.trigger.expect == {DRIFT_EVENT}]
    assert drift.actions[0].deployment_id == deployments["training/retraining"].id
    assert "modelcycle-crash-silent-runs" in automations


@dataclass(frozen=True)
class KilledRun:
    run_id: str
    config: Path
    killed_at: float
    committed_before: dict[str, list[str]]


@pytest.fixture(scope="module")
def killed_run(live: LiveService, small_parquet: Path) -> KilledRun:
    """A training run whose worker and process are SIGKILLed mid-training; a new worker starts.

    Set up early in the module so that the 60 s the server needs to notice the silence pass
    while other tests run; the outcome is checked by the module's last test.
    """
    config = _crash_config(live, small_parquet)
    store = _store(live)
    committed_before = {r: store.verify(MODEL, r) for r in store.list_runs(MODEL)}
    run_id = _run_deployment(live, "training/training", config_path=str(config))

    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    def training_in_flight() -> bool:
        with client(live) as api:
            tasks = api.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
            )
        return any(
            t.name.startswith("train-model") and t.state_type.value == "RUNNING" for t in tasks
        )

    wait_for(training_in_flight, 120, "the run to start training", interval=0.5)
    worker = live.worker
    assert worker is not None
    victims = _descendants(worker.pid)
    try:
        # The machine goes away: the worker and the run's process die without a word.
        os.killpg(worker.pid, signal.SIGKILL)
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        worker.wait(timeout=10)
        killed_at = time.monotonic()
    finally:
        live.start_worker("worker-after-crash")
    return KilledRun(run_id, config, killed_at, committed_before)


def test_worker_killed_mid_training_leaves_nothing_behind(
    killed_run: KilledRun, live: LiveService
) -> None:
    with client(live) as api:
        run = api.read_flow_run(killed_run.run_id)
    assert run.state.type.value == "RUNNING"  # nobody has told the server yet
    assert _version_of_run(live, killed_run.run_id) is None
    assert killed_run.run_id not in _store(live).list_runs(MODEL)
    assert live.worker is not None and live.worker.poll() is None


def test_scheduler_created_upcoming_runs_for_both_schedules(live: LiveService) -> None:
    def upcoming() -> bool:
        return all(
            any(r.state.type.value == "SCHEDULED" for r in _runs_of(live, f"{flow}/{name}"))
            for flow, name in (("training", "retraining"), ("monitoring", "monitoring"))
        )

    wait_for(upcoming, 90, "the server's scheduler to create the scheduled runs", interval=2)


def test_cli_run_with_override_is_run_by_the_worker_and_recorded(
    live: LiveService, small_parquet: Path
) -> None:
    overrides = {"data_source": str(small_parquet), "seed": 7, "skip_search": True}
    run_id = _run_deployment(live, "training/training", overrides=overrides)
    run = wait_for_state(live, run_id, {"COMPLETED"})

    # The deployment's defaults plus the override, as the server stored them.
    assert run.parameters["config_path"] == "configs/demo.yaml"
    assert run.parameters["overrides"]["seed"] == 7
    version = _version_of_run(live, run_id)
    assert version is not None, "the registry has no version for the run"
    assert version.created_by == "ui-or-cli"
    manifest = _store(live).read_manifest(MODEL, run_id)
    assert manifest["config"]["split"]["seed"] == 7
    assert _store(live).verify(MODEL, run_id) == []

    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with client(live) as api:
        artifacts = api.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
        )
    keys = {a.key for a in artifacts}
    assert {f"{MODEL}-training-summary", f"{MODEL}-metrics", f"{MODEL}-run-folder"} <= keys
    summary = next(a for a in artifacts if a.key == f"{MODEL}-training-summary")
    assert f"v{version.version}" in summary.data


@pytest.mark.parametrize(
    ("param", "value", "field"),
    [
        ("mode", "bogus", "mode"),
        ("overrides", '{"seed": "abc"}', "overrides.seed"),
        ("config_path", "configs/demo.txt", "config_path"),
    ],
)
def test_wrong_parameter_from_the_cli_is_refused_before_a_run_exists(
    live: LiveService, param: str, value: str, field: str
) -> None:
    before = len(_runs_of(live, "training/training"))
    result = live.prefect(
        "deployment", "run", "training/training", "--param", f"{param}={value}", check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"Validation failed for field '{field}'" in " ".join(output.split())
    assert "Traceback" not in output
    assert len(_runs_of(live, "training/training")) == before


def test_config_path_that_does_not_exist_fails_before_any_task(live: LiveService) -> None:
    run_id = _run_deployment(live, "training/training", config_path="configs/missing.yaml")
    run = wait_for_state(live, run_id, {"FAILED"})
    assert "config_path" in run.state.message
    assert "configs/missing.yaml: config file not found" in run.state.message
    with client(live) as api:
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

        tasks = api.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
    assert tasks == []  # refused at parameter validation, before the first step
    assert _version_of_run(live, run_id) is None
    assert run_id not in _store(live).list_runs(MODEL)


def _shifted_window(small_parquet: Path, demo_parquet: Path, folder: Path) -> Path:
    """Survey rows the model never saw, moved: older, more prestige, more children, graduates."""
    used = set(pd.read_parquet(small_parquet)["respondent_id"])
    table = pd.read_parquet(demo_parquet)
    rows = table.loc[(table["year"] <= 2000) & ~table["respondent_id"].isin(used)]
    rows = rows.sample(n=800, random_state=3).reset_index(drop=True)
    moved = rows.assign(
        age=(rows["age"] + 14).clip(upper=89),
        prestg10=(rows["prestg10"] + 12).clip(upper=90),
        childs=(rows["childs"] + 2).clip(upper=8),
        educcat="Graduate",
    )
    folder.mkdir(parents=True, exist_ok=True)
    moved.to_parquet(folder / "gss-2031.parquet", index=False)
    return folder / "gss-*.parquet"


def test_monitoring_deployment_finds_drift_and_the_event_retrains(
    live: LiveService, small_parquet: Path, demo_parquet: Path
) -> None:
    """The whole loop on the server: train -> monitor (drift) -> event -> retraining run."""
    pytest.importorskip("flows.monitoring", reason="the monitoring flow (issue 4) has not landed")
    from modelcycle.config import load_config

    model = "gss-income-monitored"  # its own model: its champion is the one monitored
    raw = small_config_dict(small_parquet)
    raw["name"] = model
    config = write_config(live.root, raw, "monitored.yaml")
    trained = _run_deployment(live, "training/training", config_path=str(config))
    wait_for_state(live, trained, {"COMPLETED"})

    window = _shifted_window(small_parquet, demo_parquet, live.root / "windows")
    monitored = _run_deployment(live, "monitoring/monitoring", model_name=model, window=str(window))
    run = wait_for_state(live, monitored, {"COMPLETED"})
    assert run.parameters["latest_only"] is True  # the deployment's default

    def retraining() -> Any:
        runs = [
            r
            for r in _runs_of(live, "training/retraining")
            if Path(r.parameters.get("config_path", "")).resolve() == config.resolve()
        ]
        return runs[0] if runs else None

    triggered = wait_for(retraining, 90, "the drift event to start a retraining run", interval=1)
    assert triggered.created_by is not None and triggered.created_by.type == "AUTOMATION"
    assert triggered.parameters["mode"] == load_config(config).monitoring.retrain_mode
    wait_for_state(live, str(triggered.id), {"COMPLETED"})
    version = _version_of_run(live, str(triggered.id), model)
    assert version is not None and version.created_by == f"drift-event:{model}"


def test_run_paused_for_approval_is_resumed_through_the_api(
    live: LiveService, small_parquet: Path
) -> None:
    pytest.importorskip("tasks.approval", reason="the approval gate (issue 3) has not landed")
    model = "gss-income-api-approval"  # its own model: no champion to be compared with
    raw = small_config_dict(small_parquet)
    raw["name"] = model
    raw["gate"]["approval"] = {"mode": "required", "timeout_seconds": 600}
    config = write_config(live.root, raw, "approval-api.yaml")
    run_id = _run_deployment(live, "training/training", config_path=str(config))
    wait_for_state(live, run_id, {"PAUSED"}, timeout=180)

    with client(live) as api:
        refused = api.resume_flow_run(run_id, run_input={"approved": True})  # no reviewer
        assert refused.status.value == "REJECT"
        assert "reviewer" in str(refused.details)
        accepted = api.resume_flow_run(
            run_id,
            run_input={"approved": True, "reviewer": "Ada Reviewer", "comment": "via the API"},
        )
        assert accepted.status.value == "ACCEPT", accepted.details
    wait_for_state(live, run_id, {"COMPLETED"})

    registry = _registry(live)
    (version,) = [v for v in registry.list_versions(model) if v.run_id == run_id]
    assert str(version.status) == "champion"
    approvals = [e for e in registry.audit_log(model) if e.action == "approve"]
    assert [(e.actor, e.version, e.reason) for e in approvals] == [
        ("Ada Reviewer", version.version, "via the API")
    ]


def _descendants(pid: int) -> list[int]:
    """Child processes (any depth) of `pid`, from /proc; the worker's runs are its children."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _crash_config(live: LiveService, small_parquet: Path) -> Path:
    """A search (12 fits, seconds) so that the run is still training when the worker dies."""
    raw = small_config_dict(small_parquet)
    raw["model"]["params"]["max_iter"] = 100
    raw["model"]["search"] = {
        "space": {"learning_rate": [0.05, 0.1], "max_leaf_nodes": [15, 31]},
        "cv": 3,
    }
    return write_config(live.root, raw, "crash.yaml")


def test_service_wrapper_prints_prefect_commands_and_is_idempotent(
    live: LiveService, tmp_path: Path
) -> None:
    """`modelcycle service up` on a server that already has the pool and the automation."""
    env = live.env(MODELCYCLE_HOME=str(tmp_path / "home"))
    env.pop("PREFECT_API_URL")

    def modelcycle(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "modelcycle"), "service", *args, "--port", str(live.port)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    up = modelcycle("up")
    assert up.returncode == 0, up.stdout + up.stderr
    assert f"a Prefect server already answers at {live.api_url}" in up.stdout
    assert "+ PREFECT_API_URL=" in up.stdout and "prefect --no-prompt deploy --all" in up.stdout
    # The credential came from the environment: shown by name, never by value.
    assert 'PREFECT_API_AUTH_STRING="$PREFECT_API_AUTH_STRING"' in up.stdout
    assert live.credential.split(":", 1)[1] not in up.stdout + up.stderr
    assert "work-pool create" not in up.stdout  # it exists: its template is locked again
    assert "work-pool update modelcycle-process --base-job-template" in up.stdout
    assert "automation create" not in up.stdout
    assert "prefect worker start --pool modelcycle-process" in up.stdout
    pid = int((tmp_path / "home" / "service" / "worker.pid").read_text())
    assert is_running(pid)

    with client(live) as api:
        crash = [a for a in api.read_automations() if a.name == "modelcycle-crash-silent-runs"]
        schedules = api.read_deployment_by_name("training/retraining").schedules
    assert len(crash) == 1 and len(schedules) == 1  # redeploying duplicated nothing

    status = modelcycle("status")
    assert status.returncode == 0 and "healthy" in status.stdout
    assert "anonymous requests: refused (HTTP 401)" in status.stdout
    down = modelcycle("down")
    assert down.returncode == 0, down.stderr
    assert "server: not running" in down.stdout  # not ours: left alone
    assert not is_running(pid)


def test_unreachable_server_gives_one_clear_line(tmp_path: Path) -> None:
    from live_prefect import free_port

    dead = f"http://127.0.0.1:{free_port()}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_API_URL=dead, PREFECT_HOME=str(tmp_path / "ph"), MODELCYCLE_HOME=str(tmp_path)
    )
    for args in (["train", "configs/demo.yaml"], ["service", "status"]):
        result = subprocess.run(
            [str(BIN / "modelcycle"), *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 1, args
        assert "Traceback" not in result.stdout + result.stderr
        assert f"no Prefect server answers at {dead}" in " ".join(result.stderr.split())
    assert not (tmp_path / "registry.db").exists()


def test_killed_run_is_marked_crashed_and_a_rerun_succeeds(
    killed_run: KilledRun, live: LiveService
) -> None:
    """Last in the module: by now the crash automation has had its 60 s of silence."""
    store = _store(live)
    run = wait_for_state(live, killed_run.run_id, {"CRASHED"}, timeout=150)
    print(f"run marked Crashed {time.monotonic() - killed_run.killed_at:.0f} s after the kill")
    assert "heartbeat" in run.state.message.lower()
    # Nothing half-written: no version, no committed folder for the run; old folders intact.
    assert _version_of_run(live, killed_run.run_id) is None
    assert killed_run.run_id not in store.list_runs(MODEL)
    before = killed_run.committed_before
    assert {r: store.verify(MODEL, r) for r in before} == before

    rerun_id = _run_deployment(live, "training/training", config_path=str(killed_run.config))
    wait_for_state(live, rerun_id, {"COMPLETED"}, timeout=240)
    assert _version_of_run(live, rerun_id) is not None
    assert store.verify(MODEL, rerun_id) == []


# --- the service is secured: credential, CORS, CSRF, a pool that runs only the flow ----------


def test_requests_without_the_credential_are_refused(live: LiveService) -> None:
    import httpx

    from modelcycle.cli import basic_auth_header

    deployment = _deployment(live, "training/training")
    before = len(_runs_of(live, "training/training"))
    create = f"{live.api_url}/deployments/{deployment.id}/create_flow_run"
    wrong = basic_auth_header("modelcycle:not-the-password")
    with httpx.Client(timeout=10) as http:
        assert http.get(f"{live.api_url}/health").status_code == 200  # probes stay open
        assert http.get(f"{live.api_url}/admin/version").status_code == 401
        assert http.get(f"{live.api_url}/admin/version", headers=wrong).status_code == 401
        # What the probe did: create a run anonymously. Refused before any handler
        # (CSRF answers first for POST: 403), and with a wrong credential.
        for headers in ({}, wrong):
            refused = http.post(create, json={}, headers=headers)
            assert refused.status_code in {401, 403}, refused.text
    assert len(_runs_of(live, "training/training")) == before


def test_cross_origin_preflight_is_not_allowed_from_another_origin(live: LiveService) -> None:
    import httpx

    def preflight(origin: str) -> httpx.Response:
        return httpx.options(
            f"{live.api_url}/flow_runs/filter",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
            timeout=10,
        )

    foreign = preflight("http://attacker.example")
    assert foreign.status_code >= 400
    assert foreign.headers.get("access-control-allow-origin") in {None, ""}
    own = preflight(live.url)  # the UI's own origin
    assert own.status_code == 200
    assert own.headers["access-control-allow-origin"] == live.url


@pytest.mark.parametrize(
    "job_variables",
    [
        {"command": "touch {marker}"},
        {"env": {"PYTHONSTARTUP": "{marker}", "LD_PRELOAD": "{marker}"}},
        {"working_dir": "{folder}"},
    ],
    ids=["command", "env", "working_dir"],
)
def test_a_run_cannot_choose_what_the_worker_executes(
    live: LiveService, tmp_path: Path, job_variables: dict[str, Any]
) -> None:
    """An authenticated user still cannot make the worker run another command."""
    from prefect.exceptions import PrefectHTTPStatusError

    marker = tmp_path / "pwned"
    rendered = json.loads(
        json.dumps(job_variables)
        .replace("{marker}", str(marker))
        .replace("{folder}", str(tmp_path))
    )
    deployment = _deployment(live, "training/training")
    before = len(_runs_of(live, "training/training"))
    with client(live) as api, pytest.raises(PrefectHTTPStatusError) as refused:
        api.create_flow_run_from_deployment(deployment.id, job_variables=rendered)
    assert refused.value.response.status_code == 422
    (name,) = job_variables
    assert f"'{name}' was unexpected" in refused.value.response.text
    assert len(_runs_of(live, "training/training")) == before
    assert not marker.exists()

"""Contract: every prefect.yaml deployment loads, its parameters validate, its wiring holds.

Fast (no server): the real-server proof is tests/test_service_e2e.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from conftest import REPO

PREFECT_YAML = REPO / "prefect.yaml"
EXPECTED = {
    "training",
    "retraining",
    "monitoring",
    "monitoring-log",
    "experiment",
    "promotion",
    "rollback",
    "retirement",
    "retention",
}
DRIFT_EVENT = "modelcycle.model.drift-detected"


def _project() -> dict[str, Any]:
    return yaml.safe_load(PREFECT_YAML.read_text())


def _deployments() -> list[dict[str, Any]]:
    return _project()["deployments"]


def _by_name(name: str) -> dict[str, Any]:
    return next(d for d in _deployments() if d["name"] == name)


def test_every_issue_deployment_is_declared_once() -> None:
    names = [d["name"] for d in _deployments()]
    assert sorted(names) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_entrypoint_loads_and_default_parameters_validate(name: str, monkeypatch) -> None:
    from prefect.flows import load_flow_from_entrypoint

    monkeypatch.chdir(REPO)  # the pull step runs flows from the project folder
    deployment = _by_name(name)
    flow = load_flow_from_entrypoint(deployment["entrypoint"])
    parameters = deployment.get("parameters", {})
    required = {p for p, spec in flow.parameters.properties.items() if "default" not in spec} - set(
        parameters
    )
    # Manual governance deployments leave version/reason to the person starting them.
    if deployment.get("schedules") or deployment.get("triggers"):
        assert not required, f"{name}: scheduled runs would miss {sorted(required)}"
    filled = {**{p: _example(flow, p) for p in required}, **parameters}
    validated = flow.validate_parameters(filled)
    assert set(parameters) <= set(validated)


def _example(flow: Any, parameter: str) -> Any:
    kind = flow.parameters.properties[parameter].get("type")
    return {"integer": 1, "string": "contract test", "boolean": False}.get(kind, "x")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parameter_schema_enforced_and_documented(name: str) -> None:
    from prefect.flows import load_flow_from_entrypoint

    deployment = _by_name(name)
    assert deployment.get("enforce_parameter_schema") is True
    flow = load_flow_from_entrypoint(deployment["entrypoint"])
    undocumented = [
        p for p, spec in flow.parameters.properties.items() if not spec.get("description")
    ]
    assert not undocumented, f"{name}: the UI form would show no help for {undocumented}"


def test_every_deployment_uses_the_aliased_pool_and_the_pull_step() -> None:
    project = _project()
    pool = project["definitions"]["work_pools"]["process"]
    assert all(d["work_pool"] == pool for d in _deployments())
    step = project["pull"][0]["prefect.deployments.steps.set_working_directory"]
    assert step["directory"]
    # The pool's locked template refuses job variables other than name, labels, stream_output.
    assert "job_variables" not in pool
    assert all("job_variables" not in d for d in _deployments())


def test_the_log_is_monitored_daily_since_the_last_run() -> None:
    daily = _project()["definitions"]["schedules"]["daily"]
    log = _by_name("monitoring-log")
    assert log["schedules"] == [daily] == _by_name("monitoring")["schedules"]
    assert log["parameters"] == {"model_name": "gss-income", "source": "log"}  # no since


POOL_TEMPLATE = REPO / "work-pools" / "modelcycle-process.json"


def test_pool_template_fixes_command_env_and_working_dir() -> None:
    template = json.loads(POOL_TEMPLATE.read_text())
    variables = template["variables"]
    assert variables["additionalProperties"] is False
    assert set(variables["properties"]) == {"name", "labels", "stream_output"}
    config = template["job_configuration"]
    # No fixed `env` mapping either: Prefect merges an `env` override into one.
    assert set(config) == {"name", "labels", "stream_output"}


def test_a_command_job_variable_does_not_reach_the_process_worker() -> None:
    """Even if a server accepted them, Prefect's process worker would not see the overrides
    (the server refusing them is tested against a real one in tests/test_service_e2e.py)."""
    import asyncio

    from prefect.workers.process import ProcessJobConfiguration

    template = json.loads(POOL_TEMPLATE.read_text())
    overrides = {
        "command": "touch /tmp/pwned",
        "env": {"LD_PRELOAD": "/tmp/x.so"},
        "working_dir": "/tmp",
    }
    config = asyncio.run(ProcessJobConfiguration.from_template_and_values(template, overrides))
    assert config.command is None  # the worker falls back to `python -m prefect.engine`
    assert config.env == {}  # the worker's own environment, nothing from the run
    assert config.working_dir is None

"""Contract: every prefect.yaml deployment loads, its parameters validate, its wiring holds.

Fast (no server): the real-server proof is tests/test_service_e2e.py.
"""

from __future__ import annotations

from pathlib import Path
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
    "promotion",
    "rollback",
    "retirement",
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
    assert "PREFECT_FLOWS_HEARTBEAT_FREQUENCY" in pool["job_variables"]["env"]


def test_schedules_come_from_the_definitions() -> None:
    schedules = _project()["definitions"]["schedules"]
    assert _by_name("retraining")["schedules"] == [schedules["weekly"]]
    assert _by_name("monitoring")["schedules"] == [schedules["daily"]]
    assert _by_name("monitoring")["parameters"]["latest_only"] is True
    assert _by_name("monitoring-log")["schedules"] == [schedules["daily"]]
    assert _by_name("monitoring-log")["parameters"]["source"] == "log"
    for name in ("training", "promotion", "rollback", "retirement"):
        assert not _by_name(name).get("schedules"), f"{name} is manual"


def test_weekly_and_daily_crons_parse_as_documented() -> None:
    from prefect.client.schemas.schedules import CronSchedule

    schedules = _project()["definitions"]["schedules"]
    weekly = CronSchedule(cron=schedules["weekly"]["cron"], timezone="UTC")
    daily = CronSchedule(cron=schedules["daily"]["cron"], timezone="UTC")
    assert weekly.cron.split()[4] != "*" and daily.cron.split()[2:] == ["*", "*", "*"]


def test_drift_trigger_maps_the_event_payload_to_training_parameters(monkeypatch) -> None:
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger
    from prefect.flows import load_flow_from_entrypoint

    retraining = _by_name("retraining")
    (raw,) = retraining["triggers"]
    trigger = DeploymentEventTrigger.model_validate(raw)
    assert trigger.expect == {DRIFT_EVENT}
    assert trigger.match.root["prefect.resource.id"] == "modelcycle.model.*"
    assert trigger.parameters["config_path"] == "{{ event.payload.config_path }}"
    assert trigger.parameters["mode"] == "{{ event.payload.retrain_mode }}"

    # What the server renders for an event in the documented shape must pass the flow's schema.
    monkeypatch.chdir(REPO)
    flow = load_flow_from_entrypoint(retraining["entrypoint"])
    payload = {"config_path": "configs/demo.yaml", "retrain_mode": "fine_tune"}
    rendered = {
        key: value.replace("{{ event.payload.config_path }}", payload["config_path"])
        .replace("{{ event.payload.retrain_mode }}", payload["retrain_mode"])
        .replace("{{ event.payload.model_name }}", "gss-income")
        for key, value in trigger.parameters.items()
    }
    assert str(flow.validate_parameters(rendered)["mode"]) == "fine_tune"


def test_the_crash_automation_file_is_a_valid_automation() -> None:
    from prefect.events.schemas.automations import AutomationCore

    raw = yaml.safe_load((REPO / "automations" / "crash-silent-runs.yaml").read_text())
    automation = AutomationCore.model_validate(raw)
    assert automation.trigger.posture == "Proactive"
    assert automation.actions[0].type == "change-flow-run-state"


def test_missing_config_path_is_refused_by_parameter_validation(tmp_path: Path) -> None:
    from prefect.exceptions import ParameterTypeError

    from flows.training import training

    with pytest.raises(ParameterTypeError, match=r"config_path.*not found"):
        training.validate_parameters({"config_path": str(tmp_path / "nope.yaml")})


def test_the_drift_trigger_listens_for_the_event_monitoring_emits() -> None:
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger

    from modelcycle.monitoring import DRIFT_EVENT as EMITTED

    (raw,) = _by_name("retraining")["triggers"]
    assert DeploymentEventTrigger.model_validate(raw).expect == {EMITTED}
    assert EMITTED == DRIFT_EVENT  # a published name: renaming it disconnects deployed triggers


@pytest.mark.parametrize(
    ("name", "demo_values"),
    [("training", {"config_path"}), ("monitoring", {"model_name"})],
)
def test_generic_flows_take_the_demo_values_from_the_deployments(
    name: str, demo_values: set[str]
) -> None:
    from prefect.flows import load_flow_from_entrypoint

    from flows._deployment import deployment_parameters

    deployment = _by_name(name)
    flow = load_flow_from_entrypoint(deployment["entrypoint"])
    assert demo_values <= set(flow.parameters.required or [])
    assert demo_values <= set(deployment["parameters"])
    assert deployment_parameters(name) == deployment["parameters"]  # what `python -m` runs

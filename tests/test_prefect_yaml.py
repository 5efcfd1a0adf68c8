"""Contract: every prefect.yaml deployment loads, its parameters validate, its wiring holds.

Fast (no server): the real-server proof is tests/test_service_e2e.py.
"""

from __future__ import annotations

import copy
import json
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


def test_schedules_come_from_the_definitions() -> None:
    schedules = _project()["definitions"]["schedules"]
    assert _by_name("retraining")["schedules"] == [schedules["weekly"]]
    assert _by_name("monitoring")["schedules"] == [schedules["daily"]]
    assert _by_name("monitoring")["parameters"]["latest_only"] is True
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

    assert trigger.parameters["overrides"] == (
        "{{ event.payload.retrain_overrides | default({}) }}"
    )

    # What the server renders for an event in the documented shape must pass the flow's schema:
    # rendered by Prefect's own trigger code (single expressions keep their JSON type).
    monkeypatch.chdir(REPO)
    flow = load_flow_from_entrypoint(retraining["entrypoint"])
    base = {"config_path": "configs/demo.yaml", "retrain_mode": "fine_tune", "model_name": "m"}
    log = {"prediction_log": {"only": True}}
    for payload in (base, {**base, "retrain_overrides": {}}, {**base, "retrain_overrides": log}):
        validated = flow.validate_parameters(_render(trigger.parameters, payload))
        assert str(validated["mode"]) == "fine_tune"
        expected = payload.get("retrain_overrides") or {}
        assert validated["overrides"].model_dump(exclude_defaults=True) == expected


def _render(parameters: dict, payload: dict) -> dict:
    from prefect.server.events.actions import RunDeployment
    from prefect.utilities.schema_tools.hydration import HydrationContext, hydrate

    upgraded = copy.deepcopy(parameters)
    RunDeployment._upgrade_v1_templates(upgraded)
    context = HydrationContext(render_jinja=True, jinja_context={"event": {"payload": payload}})
    return hydrate(upgraded, context)


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
    # monitoring's `window` is optional since it can read the prediction log instead
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

"""The Prefect UI in a real browser: the login, a custom run from the deployment form, an
approval form.

Debian's Chromium (`/usr/bin/chromium`, installed by .ci/run) driven by Playwright for Python,
headless, against the same real, secured server as tests/test_service_e2e.py (fixture `live`):
every page logs in through the UI's login form first.
Screenshots of every step go to tests/output/browser/ (ignored by git).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import small_config_dict, write_config
from live_prefect import REPO, LiveService, client, flow_run_id, wait_for, wait_for_state

from modelcycle.registry import Registry

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

CHROMIUM = Path("/usr/bin/chromium")
# Headless as root on a machine without internet (see the machine notes).
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = REPO / "tests" / "output" / "browser"
MODEL = "gss-income"
UI_TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {CHROMIUM} is missing: .ci/run installs it with apt-get")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install -y chromium; .ci/run does)")
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=FLAGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any, live: LiveService, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser context, logged in through the UI's form with the service credential."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    try:
        _log_in(page, live, live.credential)
        yield page
    finally:
        page.screenshot(path=SHOTS / f"{request.node.name}-last.png", full_page=True)
        context.close()


def _log_in(page: Any, live: LiveService, credential: str) -> None:
    page.goto(f"{live.url}/dashboard")
    page.wait_for_url("**/login**")  # the secured server sends a stranger to its login form
    page.locator("input[type=password]").fill(credential)
    page.get_by_role("button", name="Login").click()
    page.wait_for_url("**/dashboard**")


def test_the_ui_refuses_a_wrong_credential(browser: Any, live: LiveService) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    try:
        page.goto(f"{live.url}/deployments")
        page.wait_for_url("**/login**")
        page.locator("input[type=password]").fill("modelcycle:wrong")
        page.get_by_role("button", name="Login").click()
        page.wait_for_timeout(3000)
        _shot(page, "0-login-refused")
        assert "/login" in page.url
        assert page.locator("input[type=password]").is_visible()
    finally:
        context.close()


def _shot(page: Any, name: str) -> None:
    page.screenshot(path=SHOTS / f"{name}.png", full_page=True)


def _registry(live: LiveService) -> Registry:
    return Registry(f"sqlite:///{live.state / 'registry.db'}")


def _field(page: Any, name: str) -> Any:
    """The input of one parameter in Prefect's schema form, found by its label."""
    return page.locator(".p-label", has_text=name).locator("textarea, input").first


def _wait_for_run_page_state(page: Any, live: LiveService, run_id: str, state: str) -> None:
    page.goto(f"{live.url}/runs/flow-run/{run_id}")
    page.locator(".state-badge", has_text=state).first.wait_for(timeout=180_000)


def test_custom_run_from_the_deployment_form_completes(page: Any, live: LiveService) -> None:
    with client(live) as api:
        deployment = api.read_deployment_by_name("training/training")
    actor = "browser-custom-run"
    config = str(live.configs["small"])

    page.goto(f"{live.url}/deployments/deployment/{deployment.id}")
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("Custom run").click()
    page.get_by_text("Parameters").first.wait_for()
    _shot(page, "1-custom-run-form")
    _field(page, "config_path").fill(config)
    _field(page, "actor").fill(actor)
    _shot(page, "2-custom-run-form-filled")
    page.get_by_role("button", name="Submit").click()

    def started() -> Any:
        runs = _runs_by_actor(live, deployment.id, actor)
        return runs[0] if runs else None

    run = wait_for(started, 30, "the run started from the form", interval=0.5)
    assert run.parameters["config_path"] == config
    _wait_for_run_page_state(page, live, str(run.id), "Completed")
    _shot(page, "3-custom-run-completed")
    version = next(v for v in _registry(live).list_versions(MODEL) if v.run_id == str(run.id))
    assert version.created_by == actor


def _runs_by_actor(live: LiveService, deployment_id: Any, actor: str) -> list[Any]:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with client(live) as api:
        runs = api.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
        )
    return [r for r in runs if r.parameters.get("actor") == actor]


APPROVAL_MODEL = "gss-income-ui-approval"  # its own model: no champion to be compared with
REVIEWER = "Dr. Browser Reviewer"


def _approval_config(live: LiveService, small_parquet: Path) -> Path:
    raw = small_config_dict(small_parquet)
    raw["name"] = APPROVAL_MODEL
    raw["gate"]["approval"] = {"mode": "required", "timeout_seconds": 600}
    return write_config(live.root, raw, "approval-browser.yaml")


def test_approval_form_in_the_ui_resumes_the_run(
    page: Any, live: LiveService, small_parquet: Path
) -> None:
    pytest.importorskip("tasks.approval", reason="the approval gate (issue 3) has not landed")
    config = _approval_config(live, small_parquet)
    result = live.prefect(
        "deployment", "run", "training/training", "--param", f"config_path={config}"
    )
    run_id = flow_run_id(result.stdout)
    wait_for_state(live, run_id, {"PAUSED"}, timeout=180)

    page.goto(f"{live.url}/runs/flow-run/{run_id}")
    page.locator(".state-badge", has_text="Paused").first.wait_for()
    _shot(page, "4-run-waiting-for-approval")
    page.get_by_role("button", name="Resume").click()
    modal = page.locator(".p-modal")
    modal.get_by_role("switch").click()  # approved
    modal.locator("textarea").nth(0).fill(REVIEWER)
    modal.locator("textarea").nth(1).fill("checked the gate report in the UI")
    _shot(page, "5-approval-form-filled")
    modal.get_by_role("button", name="Submit").click()
    page.locator(".state-badge", has_text="Completed").first.wait_for(timeout=180_000)
    _shot(page, "6-approved-run-completed")

    wait_for_state(live, run_id, {"COMPLETED"})
    registry = _registry(live)
    (version,) = [v for v in registry.list_versions(APPROVAL_MODEL) if v.run_id == run_id]
    assert str(version.status) == "champion"
    approvals = [e for e in registry.audit_log(APPROVAL_MODEL) if e.action == "approve"]
    assert [(e.actor, e.version, e.reason) for e in approvals] == [
        (REVIEWER, version.version, "checked the gate report in the UI")
    ]

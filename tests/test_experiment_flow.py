"""The gate's `after_pass: shadow` policy and the experiment flow's quiet looks, under the
Prefect test harness: a passed candidate goes to shadow instead of promotion, and a look with
no traffic yet continues, counted and audited, with its artifact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from modelcycle.registry import ExperimentMode, Registry, Rollouts, VersionStatus
from modelcycle.reports import read_card_facts, registry_view, render_card

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_a_passed_candidate_goes_to_shadow_and_the_flow_waits_for_traffic(
    small_config: Path, state, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.client.orchestration import get_client

    from flows.experiment import experiment
    from flows.training import training

    assert training(config_path=str(small_config))["status"] == "champion"
    raw = yaml.safe_load(small_config.read_text())
    raw["gate"]["after_pass"] = "shadow"
    raw["split"]["seed"] = 7
    shadowed = small_config.with_name("shadow.yaml")
    shadowed.write_text(yaml.safe_dump(raw, sort_keys=False))
    outcome = training(config_path=str(shadowed))
    assert outcome["gate"] == "promote", outcome["failed_checks"]
    assert outcome["status"] == "candidate"

    registry = Registry(state.registry_url)
    assert registry.champion("gss-income").version == 1
    running = Rollouts(state.registry_url).running("gss-income")
    assert running is not None
    assert (running.challenger, running.champion, running.mode) == (2, 1, ExperimentMode.SHADOW)
    assert registry.get_version("gss-income", 2).status is VersionStatus.CANDIDATE

    for look in (1, 2):
        result = experiment(model_name="gss-income", actor="test")
        assert result["outcome"] == "continue" and result["look"] == look
        assert result["interval"] == [None, None]  # no rows with feedback yet
    assert Rollouts(state.registry_url).running("gss-income").looks == 2
    entries = registry.audit_log("gss-income")
    assert [e.action for e in entries[-3:]] == ["shadow", "experiment-look", "experiment-look"]
    assert entries[-1].details["look"] == 2 and "guardrails" in entries[-1].details
    # A deprecation notice shows on the version's model card, with its sunset and successor.
    sunset = datetime.now(UTC) + timedelta(days=90)
    Rollouts(state.registry_url).deprecate(
        "gss-income", 1, sunset=sunset, successor=2, actor="test", reason="v2 replaces it"
    )
    v1 = registry.get_version("gss-income", 1)
    card = render_card(read_card_facts(v1), registry_view(v1, registry.audit_log("gss-income")))
    assert "## Deprecation" in card
    assert f"- sunset: {sunset.isoformat()}" in card and "- successor: version 2" in card
    with get_client(sync_client=True) as client:
        artifact = client.read_latest_artifacts()
    keys = {a.key for a in artifact}
    assert "gss-income-experiment" in keys

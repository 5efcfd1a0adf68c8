"""The gate's `min_ml_test_score` policy under the Prefect test harness: a passed candidate
below the minimum stays a candidate with the reason in the audit log; the promotion flow
refuses it before anything moves, and a forced promotion goes through."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from modelcycle.errors import RegistryError
from modelcycle.registry import Registry, VersionStatus

pytestmark = pytest.mark.usefixtures("prefect_harness")
MODEL = "gss-income"


def _with_minimum(config: Path, minimum: float) -> Path:
    raw = yaml.safe_load(config.read_text())
    raw["gate"]["min_ml_test_score"] = minimum
    path = config.with_name(f"min-{minimum:g}.yaml")
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_a_candidate_below_the_minimum_ml_test_score_is_held_and_refused(
    small_config: Path, state
) -> None:
    from flows.governance import promotion
    from flows.training import training

    # 7 is the rubric's ceiling (seven tests a section); a new version cannot reach it.
    outcome = training(config_path=str(_with_minimum(small_config, 7.0)))
    assert outcome["gate"] == "promote", outcome["failed_checks"]
    assert outcome["status"] == "candidate"
    registry = Registry(state.registry_url)
    assert registry.champion(MODEL) is None
    assert registry.get_version(MODEL, 1).status is VersionStatus.CANDIDATE
    held = registry.audit_log(MODEL)[-1]
    assert (held.action, held.version) == ("promotion-skipped", 1)
    assert "below the gate's minimum 7" in held.reason
    assert held.details["policy"] == "gate.min_ml_test_score"

    entries = len(registry.audit_log(MODEL))
    with pytest.raises(RegistryError, match=r"ML Test Score [0-9.]+ is below the gate's minimum"):
        promotion(model_name=MODEL, version=1, reason="ship it", actor="test")
    assert registry.champion(MODEL) is None  # refused before anything moved
    assert len(registry.audit_log(MODEL)) == entries

    promotion(model_name=MODEL, version=1, reason="owner accepts", actor="test", force=True)
    assert registry.champion(MODEL).version == 1


def test_a_minimum_the_version_reaches_promotes_as_before(small_config: Path, state) -> None:
    from flows.training import training

    outcome = training(config_path=str(_with_minimum(small_config, 0.0)))
    assert outcome["status"] == "champion"
    actions = [e.action for e in Registry(state.registry_url).audit_log(MODEL)]
    assert "promotion-skipped" not in actions


def test_the_minimum_is_validated_with_the_field_named(small_config: Path) -> None:
    from modelcycle.config import load_config
    from modelcycle.errors import ConfigError

    with pytest.raises(ConfigError, match=r"gate\.min_ml_test_score"):
        load_config(_with_minimum(small_config, 9.0))

"""The `monitoring` config section: strict, checked against the model's features."""

from __future__ import annotations

import pytest
from conftest import demo_config_dict

from modelcycle.config import parse_config
from modelcycle.errors import ConfigError


def _with(monitoring: dict) -> dict:
    raw = demo_config_dict()
    raw["monitoring"] = monitoring
    return raw


def test_demo_config_monitoring_section():
    config = parse_config(demo_config_dict())
    assert config.monitoring.retrain_mode == "fine_tune"
    assert config.monitoring.drift_share == 0.5


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"drift_share": 1.5}, "monitoring.drift_share"),
        ({"retrain_mode": "sometimes"}, "monitoring.retrain_mode"),
        ({"min_row": 10}, "unknown key 'monitoring.min_row'"),
        ({"columns": {"shoe_size": {"method": "ks"}}}, "not features of this model: ['shoe_size']"),
        ({"columns": {"educcat": {"method": "wasserstein"}}}, "wasserstein needs a numeric column"),
        ({"columns": {"age": {"method": "psi"}}}, "monitoring.columns.age.method"),
        ({"columns": {"age": {"threshold": 0}}}, "monitoring.columns.age.threshold"),
        ({"warning_share": 0.6, "drift_share": 0.5}, "warning_share is greater than drift_share"),
    ],
)
def test_bad_monitoring_settings_are_refused_with_the_key(section, message):
    with pytest.raises(ConfigError) as error:
        parse_config(_with(section), "pipeline.yaml")
    assert message in str(error.value)
    assert "pipeline.yaml" in str(error.value)

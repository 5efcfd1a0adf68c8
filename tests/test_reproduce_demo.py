"""Issue 13's bar: `modelcycle models reproduce` gives identical model files for the demo's
versions as the demo trains them, not only for the tests' small config: version 1 from
scratch on 1974-2000 with the demo's search over four candidates, version 2 fine-tuned on
2002-2006. Slow (about a minute on 2 cores: two trainings and their two re-runs), so marked.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import demo_config_dict, write_config

from modelcycle.data import DEMO_FILE

pytestmark = pytest.mark.slow
MODEL = "gss-income"


def test_reproduce_gives_identical_model_files_for_the_demo_versions(
    state, prefect_harness, demo_parquet: Path, tmp_path: Path
) -> None:
    from modelcycle.cli import _demo
    from modelcycle.cli._reproduce import reproduce_version
    from modelcycle.config import TrainingMode
    from modelcycle.registry import Registry

    state.data_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(demo_parquet, state.data_dir / DEMO_FILE)
    raw = demo_config_dict()
    # The demo's config as it runs, but for its wall-clock latency budget: a gate check on a
    # shared runner's timing, which never changes the model file, must not decide whether v1
    # becomes the champion v2 is fine-tuned from.
    raw["gate"]["budgets"].pop("max_latency_ms_per_1000")
    assert raw["model"]["search"]["space"]  # the search is kept: v1's parameters come from it
    config = str(write_config(tmp_path, raw))

    first = _demo.run_training(config, TrainingMode.scratch, None)
    start, end = _demo.DEMO_FINE_TUNE_YEARS
    window = {"time_range": {"start": start, "end": end}}
    second = _demo.run_training(config, TrainingMode.fine_tune, window)
    assert (first["version"], first["status"], second["version"]) == (1, "champion", 2)

    registry = Registry(state.registry_url)
    try:
        recorded = {v.version: v.model_sha256 for v in registry.list_versions(MODEL)}
    finally:
        registry.close()
    for version, mode in ((1, "scratch"), (2, "fine_tune")):
        result = reproduce_version(MODEL, version)
        assert result["mode"] == mode
        assert result["identical"] is True, (version, result["differences"])
        assert result["reproduced_sha256"] == recorded[version]
        assert result["reproduced_metrics"] == result["recorded_metrics"]

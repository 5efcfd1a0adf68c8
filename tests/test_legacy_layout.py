"""A registry and run folder written by modelcycle before the stage packages (kept as a small
fixture, `tests/fixtures/legacy-layout/`) still load, render their card and monitor.

The fixture was produced by the flat-layout main (4725f36) with a 1,500-row sample of the demo
table; only the artifact folder's location is rewritten, as a user moving a store would.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "legacy-layout"
MODEL = "gss-income"


@pytest.fixture
def legacy_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "state"
    shutil.copytree(FIXTURE, home)
    with sqlite3.connect(home / "registry.db") as db:
        for row_id, uri in db.execute("SELECT id, artifact_uri FROM model_versions").fetchall():
            run = Path(uri).name
            db.execute(
                "UPDATE model_versions SET artifact_uri = ? WHERE id = ?",
                (str(home / "artifacts" / MODEL / run), row_id),
            )
    monkeypatch.setenv("MODELCYCLE_HOME", str(home))
    return home


def test_legacy_champion_loads_through_its_recorded_hash(legacy_state: Path) -> None:
    from modelcycle.artifacts import load_model
    from modelcycle.registry import Registry, VersionStatus
    from modelcycle.settings import get_settings

    champion = Registry(get_settings().registry_url).champion(MODEL)
    assert champion is not None and champion.status == VersionStatus.CHAMPION
    pipeline = load_model(f"{champion.artifact_uri}/{champion.model_file}", champion.model_sha256)
    reference = pd.read_parquet(Path(champion.artifact_uri) / "reference" / "data.parquet")
    scores = pipeline.predict_proba(reference.drop(columns=["high_income"]).head(50))
    assert scores.shape == (50, 2)


def test_legacy_card_renders_from_its_checked_facts(legacy_state: Path) -> None:
    from typer.testing import CliRunner

    from modelcycle.cli import app

    result = CliRunner().invoke(app, ["models", "card", MODEL, "1"])
    assert result.exit_code == 0, result.output
    assert "# Model card: gss-income v1" in result.output
    assert "passed the gate in training" in result.output  # the audit history, read back


@pytest.mark.usefixtures("prefect_harness")
def test_legacy_champion_monitors_a_window(
    legacy_state: Path, demo_parquet: Path, tmp_path: Path
) -> None:
    from flows.monitoring import monitoring

    years = pd.read_parquet(demo_parquet)
    window = tmp_path / "window.parquet"
    years.loc[years["year"] == 2010].to_parquet(window, index=False)
    outcome = monitoring(model_name=MODEL, window=str(window))
    assert outcome["version"] == 1
    assert outcome["status"] in {"ok", "warning", "drift"}
    assert outcome["drifted_columns"], "2010 drifts from 1974-2000 on the full model as well"
    # Recorded before importance was kept with the reference: the plain share decides, and
    # the run says so.
    assert outcome["weighted_share"] is None
    assert any("records no permutation importance" in r for r in outcome["reasons"])
    assert Path(outcome["run_folder"]).is_dir()
